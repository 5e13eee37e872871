"""The DAG of a registered drill kind that brings no ``build_dag`` of its own: one ``run`` task.

Rules this module enforces: the task resolves the drill's connections through
Airflow (``runtime`` and the alert-path clients: hooks, ``AIRFLOW_CONN_*``,
secrets backends), runs the kind's uniform ``run(spec, resources)``, and for
each result writes the evidence, then notifies, then fails the task when any
result is not PASS (``runtime.report``); nothing is imported at parse time
beyond the factory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drillbook.airflow.factory import drill_dag, drill_task

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from drillbook.catalogue import Catalogue


def airflow_resources() -> Any:
    """Connections through Airflow, for any kind (the Airflow backend of ``registry.Resources``)."""
    from drillbook.airflow.runtime import resolve_dsn
    from drillbook.drills.alert_path.dag import AirflowPathClients
    from drillbook.drills.registry import ClientResources

    return ClientResources(dsn=resolve_dsn, clients=AirflowPathClients())


def run_now(drill: Any, catalogue: Catalogue, context: dict[str, Any]) -> dict[str, Any]:
    """Run ``drill`` (task time), record and report each result; the task fails unless all are PASS."""
    import logging
    import tempfile
    from pathlib import Path

    from drillbook.airflow.runtime import DrillNotGreen, ledger_for, report
    from drillbook.drills import registry

    log = logging.getLogger(__name__)
    kind = registry.get(drill.kind)
    with tempfile.TemporaryDirectory(prefix=f"drillbook-{kind.command}-") as tmp:
        spec = registry.RunSpec(
            drill=drill,
            work_dir=Path(tmp),
            base_dir=catalogue.base_dir,
            ledger=ledger_for(catalogue),
            on_phase=lambda p: log.info(
                "phase %-18s %-14s %7.2fs  %s", p.name, p.status, p.seconds, p.detail
            ),
        )
        results = kind.run_drill(spec, airflow_resources())
    summaries: dict[str, Any] = {}
    not_green: DrillNotGreen | None = None
    for n, result in enumerate(results):
        try:
            summaries[result.target] = report(
                result,
                drill=drill,
                catalogue=catalogue,
                context=context,
                task_suffix="" if len(results) == 1 else f".{n}",
            )
        except DrillNotGreen as exc:  # every result is recorded and reported before the task fails
            not_green = not_green or exc
    if not_green is not None:
        raise not_green
    return summaries


def build_dag(drill: Any, catalogue: Catalogue) -> DAG:
    """``dr_<kind>__<name>``: one ``run`` task."""

    def run(**context: Any) -> dict[str, Any]:
        return run_now(drill, catalogue, context)

    with drill_dag(drill, catalogue) as dag:
        drill_task(run, "run")
    return dag
