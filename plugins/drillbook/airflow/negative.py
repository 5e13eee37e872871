"""DAGs of negative drills: ``dr_negative__<drill>``, once per the drill's ``negative.every``.

Rules this module enforces: only drills that declare ``negative: {every: ...}``
get one; the schedule is the period itself, so the fire alarm check runs once
in it; connections resolve through the provider hooks at task time, exactly as
the drill's own DAG resolves them; the negative result is recorded and reported
through ``runtime.report`` like any drill result, so a ``DETECTOR_BLIND`` verdict
fails the task after its evidence is written and on-call is told.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from drillbook.airflow.current_catalogue import current_catalogue
from drillbook.airflow.factory import drill_dag, drill_task

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from drillbook.catalogue import Catalogue

KIND = "negative"


def _doc(drill: Any) -> str:
    from drillbook.catalogue.common import format_duration
    from drillbook.drills.negative import expected

    assert drill.negative is not None
    return "\n".join(
        [
            f"Fire alarm check for the {drill.kind} drill `{drill.name}`, once every {format_duration(drill.negative.every)}: "
            "the drill runs through its own code against a broken input drillbook makes itself, and must turn red with "
            f"{' or '.join(f'`{c}`' for c in sorted(expected(drill.kind)))} and deliver its page (labelled NEGATIVE DRILL).",
            "",
            "`NEGATIVE_DRILL_PASSED` proves the detector and the page path; `DETECTOR_BLIND` (critical) means on-call would "
            "not have been told.",
        ]
    )


def provoke_now(drill: Any, catalogue: Catalogue, context: dict[str, Any]) -> Any:
    """Run the negative drill with Airflow-resolved connections (task time); returns its DrillResult."""
    import logging
    import tempfile
    from pathlib import Path

    from drillbook.airflow.runtime import ledger_for, notifier_for, resolve_dsn, run_context
    from drillbook.drills.alert_path.dag import AirflowPathClients
    from drillbook.drills.negative import ClientResources, run_negative

    log = logging.getLogger(__name__)
    ledger = ledger_for(catalogue)
    with tempfile.TemporaryDirectory(prefix="drillbook-negative-") as tmp:
        return run_negative(
            drill,
            work_dir=Path(tmp),
            base_dir=catalogue.base_dir,
            resources=ClientResources(dsn=resolve_dsn, clients=AirflowPathClients()),
            notifier=notifier_for(catalogue, drill, ledger=ledger),
            ctx=run_context(context, task_suffix=".inner"),
            on_phase=lambda p: log.info(
                "phase %-18s %-14s %7.2fs  %s", p.name, p.status, p.seconds, p.detail
            ),
        )


def build_dag(drill: Any, catalogue: Catalogue) -> DAG:
    """``dr_negative__<name>``: one ``provoke`` task (broken input → red run → page → judged → evidence)."""
    assert drill.negative is not None

    def provoke(**context: Any) -> dict[str, Any]:
        from drillbook.airflow.runtime import report

        result = provoke_now(drill, catalogue, context)
        return report(result, drill=drill, catalogue=catalogue, context=context)

    with drill_dag(
        drill,
        catalogue,
        doc_md=_doc(drill),
        dag_id=f"dr_{KIND}__{drill.name}",
        schedule=timedelta(seconds=drill.negative.every),
        tags=["drillbook", KIND, drill.kind],
    ) as dag:
        drill_task(provoke, "provoke")
    return dag


def build_negative_dags() -> dict[str, DAG]:
    """One DAG per enabled drill of the current catalogue that declares a negative drill."""
    catalogue = current_catalogue()
    dags: dict[str, DAG] = {}
    for drill in catalogue.drills:
        if drill.enabled and drill.negative is not None:
            dag = build_dag(drill, catalogue)
            dags[dag.dag_id] = dag
    return dags
