"""One resolver: connection ids in, typed resources out, the same for the CLI and for Airflow.

Rules this module enforces:
- a backend only *finds* a connection (``lookup(conn_id) -> Connection | None``): the
  environment backend (``EnvConnections``: ``DRILLBOOK_CONN_<ID>`` / ``AIRFLOW_CONN_<ID>``, URI or
  JSON; the CLI) and the Airflow backend (``drillbook.airflow.resources.AirflowConnections``:
  ``BaseHook.get_connection``, so the metadata DB and any secrets backend work). Everything a
  connection's fields and extras *mean* is decided here, once, so the CLI and Airflow differ only
  in the backend they pass and an extra can never be honoured on one path and ignored on the other;
- resources are built lazily and cached per id (as the provider hooks do): nothing connects in
  ``__init__``, and a drill that never needs Slack never parses its connection;
- every password, token and secret key is registered with ``redact`` before it is returned;
- a missing connection is ``ConnectionNotConfigured`` naming the id and how to define it.

The extras honoured (README, "Connections"): postgres ``sslmode``, ``sslrootcert``,
``connect_timeout``, ``application_name``, ``dbname``, ``host``; slack ``base_url``, ``timeout``,
``proxy``, ``max_retry_after``, ``channel``, ``token`` (also ``extra__slack__<name>``); aws, with
the Amazon provider's names and meaning: ``region_name``, ``endpoint_url`` (per service:
``service_config.<service>.endpoint_url``), ``aws_access_key_id``, ``aws_secret_access_key``,
``aws_session_token`` (keys also as login/password), ``profile_name``, ``role_arn`` with
``assume_role_method`` (only ``assume_role``), ``assume_role_kwargs`` (e.g. ``ExternalId``) and
``role_session_name`` (default "drillbook"; ``assume_role_kwargs.RoleSessionName`` wins),
``config_kwargs`` (botocore Config, merged over drillbook's timeouts and standard retries: a timeout
can be changed, never removed) and ``verify`` (bool or CA bundle path). Any other AWS extra is
logged as a warning naming it, and ignored.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from drillbook.errors import ConfigurationError, ConnectionNotConfigured, ResourceError
from drillbook.resources.connections import Connection, connection_from_env, how_to_define, libpq_dsn_from_env
from drillbook.safety.redact import register_secret

if TYPE_CHECKING:
    from drillbook.notify.slack import SlackConnection
    from drillbook.settings import Settings

log = logging.getLogger(__name__)


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


#: the AWS connection extras honoured, with the Amazon provider's names and meaning (README, "Connections")
AWS_EXTRAS = frozenset(
    {
        "region_name",
        "endpoint_url",
        "service_config",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "profile_name",
        "role_arn",
        "assume_role_method",
        "assume_role_kwargs",
        "role_session_name",
        "config_kwargs",
        "verify",
    }
)
#: the botocore Config every client starts from; ``config_kwargs`` merge over it, the timeouts cannot be removed
AWS_CONFIG_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 30,
    "retries": {"mode": "standard", "max_attempts": 3},
}
DEFAULT_ROLE_SESSION_NAME = "drillbook"


@dataclass(frozen=True)
class AwsClientFactory:
    """boto3 clients for one AWS connection; built on demand, each from a session of its own.

    With ``role_arn`` the session's credentials are STS ``AssumeRole`` credentials obtained with the
    connection's own identity (keys, ``profile_name`` or boto's default chain) and refreshed by
    botocore before they expire (``RefreshableCredentials``), as ``AwsBaseHook`` does.
    """

    conn_id: str | None
    region_name: str | None = None
    endpoint_url: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)
    profile_name: str | None = None
    role_arn: str | None = None
    role_session_name: str = DEFAULT_ROLE_SESSION_NAME
    assume_role_kwargs: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)  # ExternalId
    config_kwargs: Mapping[str, Any] = field(
        default_factory=lambda: copy.deepcopy(AWS_CONFIG_DEFAULTS), hash=False
    )
    verify: bool | str | None = None
    service_endpoints: Mapping[str, str] = field(default_factory=dict, hash=False)

    def endpoint_for(self, service: str) -> str | None:
        """``service_config.<service>.endpoint_url``, else ``endpoint_url`` (the provider's rule)."""
        return self.service_endpoints.get(service, self.endpoint_url)

    def client_kwargs(self, region: str | None = None, service: str | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "region_name": region or self.region_name,
            "endpoint_url": self.endpoint_for(service) if service else self.endpoint_url,
            "verify": self.verify,
        }
        if self.aws_access_key_id and self.aws_secret_access_key and not self.role_arn:
            kwargs.update(
                aws_access_key_id=self.aws_access_key_id, aws_secret_access_key=self.aws_secret_access_key
            )
            if self.aws_session_token:
                kwargs["aws_session_token"] = self.aws_session_token
        return {k: v for k, v in kwargs.items() if v is not None}

    def botocore_config(self) -> Any:
        from botocore import UNSIGNED
        from botocore.config import Config

        # a deep copy: botocore rewrites the ``retries`` dict it is given in place (max_attempts becomes
        # total_max_attempts), which through a shallow copy changed the defaults of every later client
        options = copy.deepcopy(dict(self.config_kwargs))
        if options.get("signature_version") == "unsigned":
            options["signature_version"] = UNSIGNED
        try:
            return Config(**options)
        except TypeError as exc:  # an option botocore does not know
            raise ConfigurationError(
                f"AWS connection {self.conn_id!r}: extra 'config_kwargs' is not a botocore Config: {exc}"
            ) from None

    def session(self) -> Any:
        """The boto3 session: the connection's identity, or the role it assumes."""
        import boto3

        from drillbook.resources.boundary import AWS, map_exceptions

        base: dict[str, Any] = {"region_name": self.region_name, "profile_name": self.profile_name}
        if self.aws_access_key_id and self.aws_secret_access_key:
            base.update(
                aws_access_key_id=self.aws_access_key_id,
                aws_secret_access_key=self.aws_secret_access_key,
                aws_session_token=self.aws_session_token,
            )
        what = f"AWS connection {self.conn_id!r}" + (
            f": profile {self.profile_name!r}" if self.profile_name else ""
        )
        with map_exceptions(AWS, what=what):
            # a session of our own: boto3's default session caches credentials process-wide
            own = boto3.session.Session(**{k: v for k, v in base.items() if v is not None})
        if not self.role_arn:
            return own
        return self._assumed_session(own)

    def _assumed_session(self, own: Any) -> Any:
        import boto3
        import botocore.session
        from botocore.credentials import CredentialProvider, CredentialResolver, RefreshableCredentials

        from drillbook.resources.boundary import AWS, map_exceptions

        # the provider's rule: AssumeRole goes to service_config.sts.endpoint_url, never the global endpoint_url
        sts = own.client(
            "sts",
            config=self.botocore_config(),
            endpoint_url=self.service_endpoints.get("sts"),
            **({"verify": self.verify} if self.verify is not None else {}),
        )
        role_arn, what = self.role_arn, f"AWS connection {self.conn_id!r}: assuming role {self.role_arn!r}"

        def fetch() -> dict[str, Any]:
            with map_exceptions(AWS, what=what):
                answer = sts.assume_role(
                    **{
                        "RoleSessionName": self.role_session_name,
                        **self.assume_role_kwargs,
                        "RoleArn": role_arn,
                    }
                )
            found = answer.get("Credentials") if isinstance(answer, dict) else None
            if not isinstance(found, dict) or not all(
                found.get(k) for k in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
            ):
                raise ResourceError(
                    f"{what}: STS answered without AccessKeyId, SecretAccessKey, SessionToken and Expiration"
                )
            register_secret(found["SecretAccessKey"])
            register_secret(found["SessionToken"])
            expiration = found["Expiration"]
            return {
                "access_key": found["AccessKeyId"],
                "secret_key": found["SecretAccessKey"],
                "token": found["SessionToken"],
                "expiry_time": expiration.isoformat()
                if hasattr(expiration, "isoformat")
                else str(expiration),
            }

        credentials = RefreshableCredentials.create_from_metadata(
            metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
        )

        class _Assumed(CredentialProvider):  # type: ignore[misc]
            METHOD = "sts-assume-role"

            def load(self) -> Any:
                return credentials

        core = botocore.session.Session()
        core.register_component("credential_provider", CredentialResolver([_Assumed()]))
        return boto3.session.Session(botocore_session=core, region_name=self.region_name or own.region_name)

    def client(self, service: str, region: str | None = None) -> Any:
        """A boto3 client; without keys, profile or role boto's default chain (instance role, AWS_PROFILE), like AwsBaseHook."""
        from drillbook.resources.boundary import AWS, map_exceptions

        session = self.session()
        config = self.botocore_config()
        with map_exceptions(AWS, what=f"AWS connection {self.conn_id!r}: the {service} client"):
            return session.client(service, config=config, **self.client_kwargs(region, service))


def _aws_mapping(conn_id: str | None, extra: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = extra.get(key)
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"AWS connection {conn_id!r}: extra {key!r} must be a JSON object, found {type(value).__name__}"
        )
    return value


def _aws_config(conn_id: str | None, extra: Mapping[str, Any]) -> dict[str, Any]:
    """``config_kwargs`` over the defaults; a timeout may be changed but not removed (None, 0, negative: an error)."""
    given = copy.deepcopy(_aws_mapping(conn_id, extra, "config_kwargs"))
    merged = {**copy.deepcopy(AWS_CONFIG_DEFAULTS), **given}
    for key in ("connect_timeout", "read_timeout"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigurationError(
                f"AWS connection {conn_id!r}: extra config_kwargs.{key} must be a positive "
                f"number of seconds (drillbook never runs without a timeout), found {value!r}"
            )
    retries = given.get("retries", {})
    if not isinstance(retries, dict):
        raise ConfigurationError(
            f"AWS connection {conn_id!r}: extra config_kwargs.retries must be an object, "
            f"found {type(retries).__name__}"
        )
    merged["retries"] = {**AWS_CONFIG_DEFAULTS["retries"], **retries}
    return merged


def _aws_verify(conn_id: str | None, value: Any) -> bool | str | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):  # a URI query gives strings
        return value.strip().lower() == "true"
    if isinstance(value, str) and value:
        return value  # a CA bundle path
    raise ConfigurationError(
        f"AWS connection {conn_id!r}: extra 'verify' must be true, false or a CA bundle path, found {value!r}"
    )


def aws_factory_of(conn: Connection | None, conn_id: str | None) -> AwsClientFactory:
    """The AWS factory a connection describes (None: boto's default credential chain)."""
    if conn is None:
        return AwsClientFactory(conn_id=conn_id)
    extra = conn.extra or {}
    unknown = sorted(set(extra) - AWS_EXTRAS)
    if unknown:
        log.warning(
            "AWS connection %r: extras %s are not honoured by drillbook and are ignored (honoured: %s)",
            conn_id,
            ", ".join(unknown),
            ", ".join(sorted(AWS_EXTRAS)),
        )
    secret = conn.password or extra.get("aws_secret_access_key")
    token = extra.get("aws_session_token")
    register_secret(secret)
    register_secret(token)
    role_arn = extra.get("role_arn") or None
    method = extra.get("assume_role_method") or "assume_role"
    if role_arn and method != "assume_role":
        raise ConfigurationError(
            f"AWS connection {conn_id!r}: extra assume_role_method {method!r} is not supported "
            f"by drillbook (only 'assume_role'); the role {role_arn!r} would not be assumed"
        )
    assume_kwargs = _aws_mapping(conn_id, extra, "assume_role_kwargs") if role_arn else {}
    for value in assume_kwargs.values():
        if isinstance(value, str):
            register_secret(value)  # ExternalId is a shared secret
    session_name = (
        assume_kwargs.pop("RoleSessionName", None)
        or extra.get("role_session_name")
        or DEFAULT_ROLE_SESSION_NAME
    )
    services = _aws_mapping(conn_id, extra, "service_config")
    return AwsClientFactory(
        conn_id=conn_id,
        region_name=extra.get("region_name") or None,
        endpoint_url=extra.get("endpoint_url") or None,
        aws_access_key_id=conn.login or extra.get("aws_access_key_id") or None,
        aws_secret_access_key=secret or None,
        aws_session_token=token or None,
        profile_name=extra.get("profile_name") or None,
        role_arn=role_arn,
        role_session_name=str(session_name),
        assume_role_kwargs=assume_kwargs,
        config_kwargs=_aws_config(conn_id, extra),
        verify=_aws_verify(conn_id, extra.get("verify")),
        service_endpoints={
            name: str(cfg["endpoint_url"])
            for name, cfg in services.items()
            if isinstance(cfg, dict) and cfg.get("endpoint_url")
        },
    )


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
