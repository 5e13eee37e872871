"""The composition root of the evidence pages inside Airflow: Airflow's auth, the ledger connection, the plugin.

Rules this module enforces:
- authentication is Airflow's own: the app depends on
  ``airflow.api_fastapi.core_api.security.get_user`` (the JWT the UI keeps in the ``_token``
  cookie, or a Bearer header), so the pages need no login of their own and answer 401 without one;
- the ledger DSN comes from the ``drillbook_ledger`` connection through the one resolver
  (``drillbook.airflow.resources.airflow_resolver``: Airflow's connections, any secrets backend,
  ``AIRFLOW_CONN_DRILLBOOK_LEDGER``), the same code a task uses; settings are read once here;
- the verify button's outcome is recorded through the optional ``drillbook_ledger_writer``
  connection (same resolver), never through ``drillbook_ledger``, which stays read-only.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from drillbook.web import URL_PREFIX

LEDGER_CONNECTION = "drillbook_ledger"


@functools.cache
def _resolver() -> Any:
    """The api-server's resolver (Airflow backend, settings read once: the plugin is an entry point)."""
    from drillbook.airflow.resources import airflow_resolver

    return airflow_resolver()


def ledger_dsn() -> str:
    """A psycopg DSN for the ``drillbook_ledger`` connection, or ConnectionNotConfigured naming how to set it."""
    dsn: str = _resolver().postgres_dsn(LEDGER_CONNECTION)
    return dsn


def ledger_writer_dsn() -> str | None:
    """The ``drillbook_ledger_writer`` connection's DSN, or None when it is not defined (verify is not recorded)."""
    from drillbook.web.verify_record import WRITER_CONNECTION

    resolver = _resolver()
    if resolver.find(WRITER_CONNECTION) is None:
        return None
    dsn: str = resolver.postgres_dsn(WRITER_CONNECTION)
    return dsn


async def airflow_user(request: Any) -> Any:
    """Airflow's own ``get_user`` (Bearer header first, else the ``_token`` cookie), imported on first request.

    The plugin manager loads this file in every Airflow process (scheduler, dag-processor,
    workers, ``dag.test()``); importing the api-server's security module there costs seconds.
    """
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    credentials = await bearer_scheme(request)
    return await get_user(request, None, credentials)


def build_app() -> Any:
    """The evidence app with Airflow's user dependency and the ledger connection."""
    from fastapi import Request

    from drillbook.ledger.checkpoint import CheckpointSettings
    from drillbook.web.app import create_app
    from drillbook.web.ledger_route import verify_with

    airflow_user.__annotations__["request"] = Request  # FastAPI injects the request by this annotation
    # the plugin is an entry point: its checkpoint settings (trusted key, outside copy) read once, here
    checkpoints = CheckpointSettings.from_settings(_resolver().settings)
    return create_app(
        dsn_provider=ledger_dsn,
        user_dependency=airflow_user,
        verify=verify_with(ledger_dsn, checkpoints=checkpoints),
        catalogue=current_catalogue,
        pack_settings=checkpoint_settings,
        writer_dsn=ledger_writer_dsn,
    )


def checkpoint_settings() -> Any:
    """The key the downloaded pack is signed with, found as the digest task finds it: the setting
    (``DRILLBOOK_CHECKPOINT_KEY``), else the ``drillbook_checkpoint_key`` connection's password
    (environment or Airflow's connections/secrets backend, through the resolver)."""
    from drillbook.ledger.checkpoint import KEY_CONNECTION, CheckpointSettings

    resolver = _resolver()
    keys = CheckpointSettings.from_settings(resolver.settings)
    if keys.private_key is None:
        conn = resolver.find(KEY_CONNECTION)
        if conn is not None and conn.password:
            keys = CheckpointSettings(private_key=conn.password, public_key=keys.public_key, path=keys.path)
    return keys


def current_catalogue() -> Any:
    """The catalogue (DRILLBOOK_CATALOGUE) Controls and Coverage judge the ledger against, or None when unset."""
    from drillbook.catalogue import load_catalogue
    from drillbook.settings import load_settings  # the plugin is an entry point

    settings = load_settings()
    configured = settings.catalogue
    if not configured:
        return None
    return load_catalogue(configured, gx_suites=settings.suite_check_for("airflow"))


class EvidenceApp:
    """An ASGI app that builds the FastAPI evidence app on its first request.

    The plugin manager imports this file in every Airflow process, including each task's
    runner; FastAPI, psycopg and the api-server's security module would add seconds to all
    of them, while only the api-server ever serves a page.
    """

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = build_app()
        await self._app(scope, receive, send)


class DrillbookEvidencePlugin(AirflowPlugin):
    """Mounts the evidence pages at /drillbook and adds "Evidence" to the Airflow UI's navigation."""

    name = "drillbook_evidence"
    fastapi_apps = [{"app": EvidenceApp(), "url_prefix": URL_PREFIX, "name": "drillbook evidence"}]
    external_views = [
        {
            "name": "Evidence",
            "href": f"{URL_PREFIX}/history",
            "destination": "nav",
            "url_route": "drillbook-evidence",
            "category": "Browse",
        }
    ]
