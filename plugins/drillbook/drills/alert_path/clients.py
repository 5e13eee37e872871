"""Resolve alert-path clients from the environment (``AIRFLOW_CONN_<ID>``), without Airflow.

Used by ``drillbook run alert-path`` and by tests; the Airflow task resolves
the same connection ids through the provider hooks instead
(``drillbook.airflow.alert_path``). Rules: clients are built lazily, once per
connection id; every secret is registered with ``redact`` by
``drillbook.connections`` before a client sees it; a missing connection raises
``ConnectionNotConfigured`` (the drill turns it into ``CONNECTION_MISSING``).
"""

from __future__ import annotations

from typing import Any

from drillbook.connections import Connection, connection_from_env, require_connection
from drillbook.errors import ConnectionNotConfigured
from drillbook.redact import register_secret

SLACK_TIMEOUT = 10  # seconds per Slack API call


def slack_web_client(*, token: str, base_url: str | None = None, timeout: int = SLACK_TIMEOUT) -> Any:
    """A slack_sdk WebClient that waits out 429s and retries connection errors (both bounded)."""
    from slack_sdk import WebClient
    from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

    register_secret(token)
    kwargs: dict[str, Any] = {"token": token, "timeout": timeout}
    if base_url:
        kwargs["base_url"] = base_url if base_url.endswith("/") else base_url + "/"
    # passing retry_handlers replaces the default connection-error handler, so list both
    kwargs["retry_handlers"] = [ConnectionErrorRetryHandler(max_retry_count=1), RateLimitErrorRetryHandler(max_retry_count=2)]
    return WebClient(**kwargs)


class EnvPathClients:
    """``PathClients`` backed by AIRFLOW_CONN_* / DRILLBOOK_CONN_* environment variables."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, ...], Any] = {}

    def slack(self, conn_id: str) -> Any:
        key = ("slack", conn_id)
        if key not in self._cache:
            conn = require_connection(conn_id)
            token = conn.password or conn.extra.get("token")
            if not token:
                raise ConnectionNotConfigured(f"Slack connection {conn_id!r} has no token in its password field")
            base_url = conn.extra.get("base_url") or conn.extra.get("extra__slack__base_url")
            timeout = int(conn.extra.get("timeout") or SLACK_TIMEOUT)
            self._cache[key] = slack_web_client(token=token, base_url=base_url, timeout=timeout)
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
        return require_connection(conn_id)
