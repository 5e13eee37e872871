"""Read connections from the environment without importing Airflow.

The CLI and the demo run without Airflow (importing it costs seconds), yet
must resolve the same connection ids the DAGs use. Airflow's own convention is
followed: ``AIRFLOW_CONN_<ID>`` holds a URI or a JSON object. drillbook also
accepts ``DRILLBOOK_CONN_<ID>`` (same formats), which wins when both are set.

Rule: every password/token read here is registered with ``redact`` before it
is returned, so it can never leak through a log line or a finding.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from drillbook.errors import ConnectionNotConfigured
from drillbook.safety.redact import register_secret


@dataclass(frozen=True)
class Connection:
    conn_id: str
    conn_type: str = ""
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def postgres_dsn(self) -> str:
        """A libpq key=value DSN for a postgres connection (schema = database name)."""
        from psycopg.conninfo import make_conninfo

        params: dict[str, Any] = {
            "host": self.host or self.extra.get("host"),
            "port": self.port,
            "user": self.login,
            "password": self.password,
            "dbname": self.schema or self.extra.get("dbname") or "postgres",
        }
        for key in ("sslmode", "sslrootcert", "connect_timeout", "application_name"):
            if key in self.extra:
                params[key] = self.extra[key]
        return make_conninfo("", **{k: v for k, v in params.items() if v not in (None, "")})


def _env_key(conn_id: str) -> str:
    return conn_id.upper().replace("-", "_").replace(".", "_")


def _from_uri(conn_id: str, uri: str) -> Connection:
    parts = urlsplit(uri)
    extra: dict[str, Any] = dict(parse_qsl(parts.query))
    if "__extra__" in extra:
        extra = json.loads(extra.pop("__extra__"))
    host = unquote(parts.hostname) if parts.hostname else None
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    return Connection(
        conn_id=conn_id,
        conn_type=parts.scheme.replace("-", "_").replace("postgresql", "postgres"),
        host=host,
        port=parts.port,
        login=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        schema=unquote(path) or None,
        extra=extra,
    )


def _from_json(conn_id: str, data: dict[str, Any]) -> Connection:
    extra = data.get("extra") or {}
    if isinstance(extra, str):
        extra = json.loads(extra) if extra.strip() else {}
    return Connection(
        conn_id=conn_id,
        conn_type=str(data.get("conn_type", "")),
        host=data.get("host"),
        port=int(data["port"]) if data.get("port") else None,
        login=data.get("login"),
        password=data.get("password"),
        schema=data.get("schema"),
        extra=extra,
    )


def connection_from_env(conn_id: str, *, environ: Mapping[str, str] | None = None) -> Connection | None:
    """The connection ``conn_id`` from DRILLBOOK_CONN_<ID> or AIRFLOW_CONN_<ID> (of ``environ``, default os.environ), or None."""
    key = _env_key(conn_id)
    env = os.environ if environ is None else environ
    for var in (f"DRILLBOOK_CONN_{key}", f"AIRFLOW_CONN_{key}"):
        raw = env.get(var)
        if not raw:
            continue
        raw = raw.strip()
        try:
            conn = _from_json(conn_id, json.loads(raw)) if raw.startswith("{") else _from_uri(conn_id, raw)
        except (ValueError, TypeError) as exc:
            raise ConnectionNotConfigured(
                f"environment variable {var} for connection {conn_id!r} is neither a connection URI nor JSON: {exc}"
            ) from None
        register_secret(conn.password)
        for secret_key in ("token", "api_key", "routing_key", "aws_secret_access_key", "webhook_token"):
            if isinstance(conn.extra.get(secret_key), str):
                register_secret(conn.extra[secret_key])
        return conn
    return None


#: What a connection of each type looks like, for messages that say how to define one.
_EXAMPLES: dict[str, str] = {
    "postgres": "a URI like 'postgresql://user:pass@host:5432/db'",
    "http": 'JSON like \'{"conn_type": "http", "host": "alerts.example.com", "schema": "https", '
    '"extra": {"endpoint": "/hooks/drillbook"}}\' or a URI like \'https://alerts.example.com/hooks/drillbook\'',
    "slack": 'JSON with "conn_type": "slack" and the bot token (xoxb-...) as its password',
    "aws": 'JSON like \'{"conn_type": "aws", "extra": {"region_name": "eu-west-1"}}\' '
    "(or no connection at all: boto's default credentials)",
}


def connection_example(conn_type: str | None) -> str:
    """How to write a connection of ``conn_type`` (postgres, http/webhook, slack, aws) in a variable."""
    kind = (conn_type or "").lower()
    kind = {
        "postgresql": "postgres",
        "webhook": "http",
        "https": "http",
        "alertmanager": "http",
        "pagerduty": "http",
        "opsgenie": "http",
    }.get(kind, kind)
    return _EXAMPLES.get(kind, "a connection URI or JSON of its type")


def how_to_define(conn_id: str, conn_type: str | None = None) -> str:
    """The sentence telling someone how to define connection ``conn_id`` of ``conn_type``."""
    key = _env_key(conn_id)
    return (
        f"set AIRFLOW_CONN_{key} (or DRILLBOOK_CONN_{key}) to {connection_example(conn_type)}, "
        f"or define it in Airflow"
    )


def require_connection(conn_id: str, *, conn_type: str = "postgres") -> Connection:
    """Like ``connection_from_env`` but a missing connection is a clear error whose example fits its type."""
    conn = connection_from_env(conn_id)
    if conn is None:
        raise ConnectionNotConfigured(
            f"connection {conn_id!r} is not defined: {how_to_define(conn_id, conn_type)}"
        )
    return conn


def libpq_dsn_from_env(conn_id: str, *, environ: Mapping[str, str] | None = None) -> str | None:
    """A plain libpq DSN (``host=... dbname=...``) in DRILLBOOK_CONN_<ID> / AIRFLOW_CONN_<ID>, as is; else None."""
    key = _env_key(conn_id)
    env = os.environ if environ is None else environ
    for var in (f"DRILLBOOK_CONN_{key}", f"AIRFLOW_CONN_{key}"):
        raw = env.get(var, "").strip()
        if raw and not raw.startswith("{") and "://" not in raw:  # libpq "host=... dbname=..." form
            from drillbook.resources.pg import parse

            parse(raw)  # registers the password
            return raw
    return None


def postgres_dsn_from_env(conn_id: str) -> str:
    """A psycopg DSN for ``conn_id``; a plain libpq DSN in the variable is accepted as is."""
    return libpq_dsn_from_env(conn_id) or require_connection(conn_id).postgres_dsn()
