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

from drillbook.resources.connections import Connection

#: The drill counts its own attempts at 5xx answers; the client retries only 429s and lost connections.
ALERT_PATH_SLACK_RETRIES: dict[str, Any] = {"retry_server_errors": False, "connection_retries": 1}


class EnvPathClients:
    """``PathClients`` backed by the resolver (by default on the environment: AIRFLOW_CONN_* / DRILLBOOK_CONN_*)."""

    def __init__(self, resolver: Any = None) -> None:
        if resolver is None:
            from drillbook.resources.resolver import EnvConnections, Resolver

            resolver = Resolver(EnvConnections())
        self.resolver = resolver
        self._cache: dict[tuple[str, ...], Any] = {}

    def slack(self, conn_id: str) -> Any:
        key = ("slack", conn_id)
        if key not in self._cache:
            # the resolver's one Slack reading, as under Airflow
            self._cache[key] = self.resolver.slack_client(conn_id, **ALERT_PATH_SLACK_RETRIES)
        return self._cache[key]

    def aws(self, conn_id: str, service: str, region: str | None) -> Any:
        key = ("aws", conn_id, service, region or "")
        if key not in self._cache:
            # like AwsBaseHook: a missing AWS connection falls back to boto's default credential
            # chain (instance role, AWS_PROFILE); no credentials at all becomes CONNECTION_MISSING
            self._cache[key] = self.resolver.aws(conn_id).client(service, region)
        return self._cache[key]

    def http(self, conn_id: str) -> Connection:
        return self.resolver.connection(conn_id, conn_type="http")  # type: ignore[no-any-return]
