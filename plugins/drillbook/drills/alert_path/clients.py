"""Resolve alert-path clients from the environment (``AIRFLOW_CONN_<ID>``), without Airflow.

Used by ``drillbook run alert-path`` and by tests; the Airflow task resolves
the same connection ids through the provider hooks instead
(``drillbook.drills.alert_path.dag``). Rules: clients are built lazily, once per
connection id; every secret is registered with ``redact`` by
``drillbook.resources.connections`` before a client sees it; a missing connection raises
``ConnectionNotConfigured`` (the drill turns it into ``CONNECTION_MISSING``).
"""

from __future__ import annotations

from typing import Any

from drillbook.resources.connections import Connection, connection_from_env, require_connection
from drillbook.safety.redact import register_secret

#: The drill counts its own attempts at 5xx answers; the client retries only 429s and lost connections.
ALERT_PATH_SLACK_RETRIES: dict[str, Any] = {"retry_server_errors": False, "connection_retries": 1}


class EnvPathClients:
    """``PathClients`` backed by AIRFLOW_CONN_* / DRILLBOOK_CONN_* environment variables."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, ...], Any] = {}

    def slack(self, conn_id: str) -> Any:
        key = ("slack", conn_id)
        if key not in self._cache:
            from drillbook.notify.slack import parse_slack_connection

            conn = require_connection(conn_id, conn_type="slack")
            # the one Slack parser (drillbook.notify.slack), as under Airflow
            self._cache[key] = parse_slack_connection(conn_id, password=conn.password, extra=conn.extra).web_client(
                **ALERT_PATH_SLACK_RETRIES)
        return self._cache[key]

    def aws(self, conn_id: str, service: str, region: str | None) -> Any:
        key = ("aws", conn_id, service, region or "")
        if key not in self._cache:
            import boto3
            from botocore.config import Config

            # like AwsBaseHook: a missing AWS connection falls back to boto's default credential
            # chain (instance role, AWS_PROFILE); no credentials at all becomes CONNECTION_MISSING
            conn = connection_from_env(conn_id)
            extra = conn.extra if conn is not None else {}
            kwargs: dict[str, Any] = {
                "region_name": region or extra.get("region_name") or None,
                "endpoint_url": extra.get("endpoint_url") or None,
                "config": Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 3}),
            }
            access_key = (conn.login if conn else None) or extra.get("aws_access_key_id")
            secret_key = (conn.password if conn else None) or extra.get("aws_secret_access_key")
            if access_key and secret_key:
                register_secret(secret_key)
                kwargs.update(aws_access_key_id=access_key, aws_secret_access_key=secret_key)
            # a session of our own: boto3's default session caches credentials process-wide
            self._cache[key] = boto3.session.Session().client(service, **kwargs)
        return self._cache[key]

    def http(self, conn_id: str) -> Connection:
        return require_connection(conn_id, conn_type="http")
