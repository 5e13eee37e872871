"""Turn catalogue entries into DAGs: one DAG per drill, ``dr_<kind>__<name>``.

Rules this module enforces (DAG policy, checked by tests/foundation/test_dag_integrity.py):
every drillbook DAG has owner, retries, ``catchup=False``, ``max_active_runs=1``,
tags ``["drillbook", <kind>]``, a ``doc_md`` and the on-failure callback. Parsing
does no I/O beyond reading the catalogue once per process and imports nothing
heavy: drills import their clients inside tasks. A broken catalogue raises
``CatalogueError`` at import, so Airflow shows one import error that names the
file, line and key.
"""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from drillbook.airflow.current_catalogue import current_catalogue
from drillbook.catalogue import Catalogue

if TYPE_CHECKING:
    from airflow.sdk import DAG

#: kind -> module with ``build_dag(drill, catalogue) -> DAG``
BUILDERS = {
    "backup_restore": "drillbook.airflow.backup_restore",
    "data_quality": "drillbook.airflow.data_quality",
    "certificates": "drillbook.airflow.certificates",
    "alert_path": "drillbook.airflow.alert_path",
}


def dag_id_for(kind: str, name: str) -> str:
    return f"dr_{kind}__{name}"


def _on_failure(context: Any) -> None:
    """DAG-level failure callback (a plain function: a Notifier object breaks dag.test(), airflow#64649)."""
    from drillbook.airflow.notify import on_failure_callback

    on_failure_callback(context)


def default_args(drill: Any, catalogue: Catalogue) -> dict[str, Any]:
    retries = drill.retries if getattr(drill, "retries", None) is not None else catalogue.defaults.retries
    return {
        "owner": catalogue.owner_of(drill),
        "retries": retries,
        "retry_delay": timedelta(seconds=catalogue.defaults.retry_delay),
        "execution_timeout": timedelta(hours=6),
    }


def drill_doc(drill: Any, catalogue: Catalogue, body: str = "") -> str:
    """The DAG's doc_md: what it proves, for which controls, against which objectives."""
    lines = [f"### drillbook · {drill.kind} · `{drill.name}`", ""]
    if drill.description:
        lines += [drill.description, ""]
    lines += [
        f"* **Schedule:** `{drill.schedule}` ({catalogue.defaults.timezone})",
        f"* **Owner:** {catalogue.owner_of(drill)}",
        f"* **Controls:** {', '.join(drill.controls) or 'none declared'}",
        f"* **Catalogue:** `{catalogue.path}`",
    ]
    if body:
        lines += ["", body]
    lines += ["", "Results are written to the evidence ledger before Slack is told; "
              "verify the ledger with `drillbook evidence verify`."]
    return "\n".join(lines)


def drill_dag(drill: Any, catalogue: Catalogue, *, doc_md: str = "", dag_id: str | None = None,
              schedule: str | timedelta | None = None, tags: list[str] | None = None) -> DAG:
    """A DAG carrying drillbook's policy for ``drill``; use as ``with drill_dag(...) as dag:``."""
    import pendulum
    from airflow.sdk import DAG

    tz = pendulum.timezone(catalogue.defaults.timezone)
    return DAG(
        dag_id=dag_id or dag_id_for(drill.kind, drill.name),
        description=(drill.description or f"{drill.kind} drill {drill.name}")[:200],
        schedule=schedule or drill.schedule,
        start_date=datetime(2026, 1, 1, tzinfo=tz),
        catchup=False,
        max_active_runs=1,
        default_args=default_args(drill, catalogue),
        tags=tags or ["drillbook", drill.kind],
        doc_md=drill_doc(drill, catalogue, doc_md),
        on_failure_callback=_on_failure,
        params={},
    )


def build_dags(kind: str) -> dict[str, DAG]:
    """All DAGs of one drill kind from the current catalogue, keyed by dag_id."""
    from drillbook.safety.redact import install_log_redaction

    install_log_redaction()  # a DAG file is an entry point: its process's log lines pass through redact
    if kind not in BUILDERS:
        raise ValueError(f"unknown drill kind {kind!r}; expected one of {sorted(BUILDERS)}")
    catalogue = current_catalogue()
    builder = importlib.import_module(BUILDERS[kind])
    dags: dict[str, DAG] = {}
    for drill in catalogue.of_kind(kind):
        dag = builder.build_dag(drill, catalogue)
        dags[dag.dag_id] = dag
    return dags
