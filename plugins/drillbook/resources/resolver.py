"""One resolver: connection ids in, typed resources out, the same for the CLI and for Airflow.

Rules this module enforces:
- a backend only *finds* a connection (``lookup(conn_id) -> Connection | None``): the
  environment backend (``EnvConnections``: ``DRILLBOOK_CONN_<ID>`` / ``AIRFLOW_CONN_<ID>``, URI or
  JSON; the CLI) and the Airflow backend (``drillbook.airflow.resources.AirflowConnections``:
  ``BaseHook.get_connection``, so the metadata DB and any secrets backend work). Everything a
  connection's fields and extras *mean* is decided here (an AWS connection's in
  ``drillbook.resources.aws``), once, so the CLI and Airflow differ only in the backend they
  pass and an extra can never be honoured on one path and ignored on the other;
- resources are built lazily and cached per id (as the provider hooks do): nothing connects in
  ``__init__``, and a drill that never needs Slack never parses its connection;
- every password, token and secret key is registered with ``redact`` before it is returned;
- a missing connection is ``ConnectionNotConfigured`` naming the id and how to define it.

The extras honoured (README, "Connections"): postgres ``sslmode``, ``sslrootcert``,
``connect_timeout``, ``application_name``, ``dbname``, ``host``; slack ``base_url``, ``timeout``,
``proxy``, ``max_retry_after``, ``channel``, ``token`` (also ``extra__slack__<name>``); aws as
``drillbook.resources.aws`` says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from drillbook.errors import ConfigurationError, ConnectionNotConfigured
from drillbook.resources.aws import AwsClientFactory, aws_factory_of
from drillbook.resources.connections import Connection, connection_from_env, how_to_define, libpq_dsn_from_env
from drillbook.safety.redact import register_secret

if TYPE_CHECKING:
    from drillbook.notify.slack import SlackConnection
    from drillbook.settings import Settings


class ConnectionSource(Protocol):
    """A backend: where connections are found (never what they mean)."""

    name: str

    def lookup(self, conn_id: str) -> Connection | None: ...


class EnvConnections:
    """The CLI's backend: ``DRILLBOOK_CONN_<ID>`` (wins) or ``AIRFLOW_CONN_<ID>`` of the environment given."""

    name = "environment"

    def __init__(self, environ: Mapping[str, str] | None = None):
        # a copy given by the entry point (later changes unseen), or None: the process environment at lookup
        self.variables = dict(environ) if environ is not None else None

    def lookup(self, conn_id: str) -> Connection | None:
        return connection_from_env(conn_id, environ=self.variables)

    def libpq_dsn(self, conn_id: str) -> str | None:
        """A plain libpq ``host=... dbname=...`` string in the variable (an environment-only form)."""
        return libpq_dsn_from_env(conn_id, environ=self.variables)


class Resolver:
    """Connection ids → Postgres DSNs, Slack connection/client, AWS client factories, Ledger, Notifier."""

    def __init__(self, source: ConnectionSource, *, settings: Settings | None = None):
        self.source = source
        self.settings = settings
        self._connections: dict[str, Connection | None] = {}
        self._slack: dict[str, SlackConnection] = {}
        self._aws: dict[str | None, AwsClientFactory] = {}

    def __repr__(self) -> str:
        return f"Resolver({self.source.name})"

    def _settings(self, what: str) -> Settings:
        """The entry point's settings; a resolver built without them cannot place ``what`` (never a silent default)."""
        if self.settings is None:
            raise ConfigurationError(
                f"{what} is placed by the settings, but this resolver was built without them; "
                "expected Resolver(..., settings=load_settings()) at the entry point"
            )
        return self.settings

    # -- connections ------------------------------------------------------------------------------------
    def find(self, conn_id: str) -> Connection | None:
        if conn_id not in self._connections:
            conn = self.source.lookup(conn_id)
            if conn is not None:
                register_secret(conn.password)
                for key in (
                    "token",
                    "api_key",
                    "routing_key",
                    "aws_secret_access_key",
                    "webhook_token",
                    "password",
                ):
                    if isinstance(conn.extra.get(key), str):
                        register_secret(conn.extra[key])
            self._connections[conn_id] = conn
        return self._connections[conn_id]

    def has(self, conn_id: str) -> bool:
        return self.find(conn_id) is not None

    def connection(self, conn_id: str, *, conn_type: str = "postgres") -> Connection:
        conn = self.find(conn_id)
        if conn is None:
            raise ConnectionNotConfigured(
                f"connection {conn_id!r} is not defined: {how_to_define(conn_id, conn_type)}"
            )
        return conn

    # -- typed resources ----------------------------------------------------------------------------------
    def postgres_dsn(self, conn_id: str) -> str:
        """A psycopg DSN (schema = database; the postgres extras above)."""
        libpq = getattr(self.source, "libpq_dsn", None)
        raw = libpq(conn_id) if libpq is not None else None
        if raw:
            return raw
        from drillbook.resources.boundary import POSTGRES, map_exceptions

        conn = self.connection(conn_id)
        with map_exceptions(POSTGRES, what=f"postgres connection {conn_id!r}"):
            return conn.postgres_dsn()

    def slack(self, conn_id: str) -> SlackConnection:
        """The Slack connection: token, base_url, timeout, proxy, channel and its retry policy (max_retry_after)."""
        if conn_id not in self._slack:
            from drillbook.notify.slack import parse_slack_connection

            conn = self.connection(conn_id, conn_type="slack")
            self._slack[conn_id] = parse_slack_connection(conn_id, password=conn.password, extra=conn.extra)
        return self._slack[conn_id]

    def slack_client(self, conn_id: str, **options: Any) -> Any:
        """A slack_sdk WebClient with the bounded retry handlers of its connection."""
        return self.slack(conn_id).web_client(**options)

    def aws(self, conn_id: str | None) -> AwsClientFactory:
        """The AWS client factory of ``conn_id``; a missing (or no) connection means boto's default chain."""
        if conn_id not in self._aws:
            self._aws[conn_id] = aws_factory_of(self.find(conn_id) if conn_id else None, conn_id)
        return self._aws[conn_id]

    def ledger(self, conn_id: str) -> Any:
        """The evidence ledger on ``conn_id``, spooling where the settings say."""
        from drillbook.ledger.store import Ledger

        return Ledger(self.postgres_dsn(conn_id), spool=str(self._settings("the evidence spool").spool_file))

    def notifier(
        self, *, catalogue: Any, drill: Any = None, ledger: Any = None, outbox: str | None = None
    ) -> Any:
        """Slack when the catalogue's Slack connection exists, else the local outbox (``outbox``, else the setting).

        A Slack connection that exists but cannot be used is ``NotificationFailed`` on both paths.
        """
        from drillbook.errors import NotificationFailed
        from drillbook.notify.notifier import build_notifier

        conn_id = catalogue.defaults.slack.connection
        try:
            connection = self.slack(conn_id) if self.has(conn_id) else None
        except ConnectionNotConfigured as exc:
            raise NotificationFailed(str(exc)) from None
        if outbox is None:
            outbox = str(self._settings("the outbox").outbox)
        return build_notifier(
            catalogue=catalogue, drill=drill, connection=connection, ledger=ledger, outbox=outbox
        )
