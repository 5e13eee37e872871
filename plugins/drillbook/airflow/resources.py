"""The resolver's Airflow backend: connections found through ``BaseHook.get_connection``.

Rule this module enforces: it only *finds* a Connection (metadata DB, ``AIRFLOW_CONN_*``, any secrets
backend) and hands its fields over as ``drillbook.resources.connections.Connection``; what the fields
and extras mean is decided by ``drillbook.resources.resolver`` for the CLI and Airflow alike.
"""

from __future__ import annotations

from typing import Any

from drillbook.resources.connections import Connection
from drillbook.resources.resolver import Resolver
from drillbook.settings import Settings, load_settings


class AirflowConnections:
    """Connections from Airflow (``BaseHook.get_connection``); None when Airflow does not know the id."""

    name = "airflow"

    def lookup(self, conn_id: str) -> Connection | None:
        from airflow.sdk import BaseHook

        try:
            conn: Any = BaseHook.get_connection(conn_id)
        except Exception:  # AirflowNotFoundException (its module moved between versions)
            return None
        return Connection(
            conn_id=conn_id,
            conn_type=str(conn.conn_type or ""),
            host=conn.host or None,
            port=int(conn.port) if conn.port else None,
            login=conn.login or None,
            password=conn.password or None,
            schema=conn.schema or None,
            extra=dict(conn.extra_dejson or {}),
        )


def airflow_resolver(settings: Settings | None = None) -> Resolver:
    """The resolver of a task: the Airflow backend, the settings read here (the task is the entry point)."""
    return Resolver(AirflowConnections(), settings=settings or load_settings())
