"""Small helpers for PostgreSQL connection strings and identifiers (psycopg 3).

Rules: a DSN's password never goes into argv — ``tool_env`` passes it to
pg_dump/pg_restore/psql through ``PGPASSWORD``; ``describe`` is the only way a
DSN is shown to people (no password, no user-info).
"""

from __future__ import annotations

import os
from typing import Any

from drillbook.safety.redact import redact, register_dsn, register_secret


def parse(dsn: str) -> dict[str, str]:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    register_dsn(dsn)  # before parsing: a malformed DSN's error message quotes the password
    try:
        raw = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        from drillbook.errors import ConfigurationError

        raise ConfigurationError(
            f"malformed PostgreSQL DSN: {redact(str(exc).strip())} "
            f"(a '%' in a URI password must be written '%25')"
        ) from None
    params = {k: str(v) for k, v in raw.items() if v is not None}
    register_secret(params.get("password"))
    return params


def with_dbname(dsn: str, dbname: str) -> str:
    """Return ``dsn`` pointing at database ``dbname`` (same server and credentials)."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, dbname=dbname)


def server_identity(dsn: str) -> tuple[str, str]:
    """(host, port) that identifies the server a DSN points at; sockets count as localhost."""
    params = parse(dsn)
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
    if host.startswith("/") or host in {"127.0.0.1", "::1", "localhost"}:
        host = "localhost" if not host.startswith("/") else f"socket:{host}"
    return host, params.get("port") or os.environ.get("PGPORT") or "5432"


def describe(dsn: str) -> str:
    """A human description of a DSN without credentials: ``host:port/dbname``."""
    params = parse(dsn)
    host = params.get("host") or "localhost"
    return f"{host}:{params.get('port', '5432')}/{params.get('dbname', '')}"


def tool_env(dsn: str) -> dict[str, str]:
    """Environment for libpq tools: connection parameters as PG* variables, password never in argv."""
    params = parse(dsn)
    register_secret(params.get("sslpassword"))
    env = dict(os.environ)  # inherited PG* variables stay: psycopg's libpq honours them for the same DSN
    # every libpq keyword that changes which server is reached, or how: the tools must reach
    # exactly the server psycopg reaches with the same DSN
    mapping = {
        "host": "PGHOST",
        "hostaddr": "PGHOSTADDR",
        "port": "PGPORT",
        "user": "PGUSER",
        "password": "PGPASSWORD",
        "passfile": "PGPASSFILE",
        "dbname": "PGDATABASE",
        "service": "PGSERVICE",
        "options": "PGOPTIONS",
        "application_name": "PGAPPNAME",
        "sslmode": "PGSSLMODE",
        "sslrootcert": "PGSSLROOTCERT",
        "sslcert": "PGSSLCERT",
        "sslkey": "PGSSLKEY",
        "sslcrl": "PGSSLCRL",
        "sslpassword": "PGSSLPASSWORD",
        "target_session_attrs": "PGTARGETSESSIONATTRS",
        "gssencmode": "PGGSSENCMODE",
        "channel_binding": "PGCHANNELBINDING",
        "connect_timeout": "PGCONNECT_TIMEOUT",
    }
    for key, var in mapping.items():
        if key in params:
            env[var] = params[key]
    return env


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def connect(dsn: str, **kwargs: Any):  # type: ignore[no-untyped-def]
    """Open a psycopg connection with a bounded connect timeout."""
    import psycopg

    kwargs.setdefault("connect_timeout", 10)
    return psycopg.connect(dsn, **kwargs)


def airflow_connection_json(dsn: str) -> str:
    """The DSN as an Airflow postgres Connection in JSON (for ``AIRFLOW_CONN_<ID>`` variables).

    Airflow reads these variables as a URI or JSON, never as a libpq key=value DSN;
    JSON keeps a unix-socket directory as the host, which a URI cannot carry cleanly.
    """
    import json

    p = parse(dsn)
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": p.get("host"),
            "port": int(p["port"]) if p.get("port") else None,
            "login": p.get("user"),
            "password": p.get("password") or None,
            "schema": p.get("dbname"),
        }
    )
