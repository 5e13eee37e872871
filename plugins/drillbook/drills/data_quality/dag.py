"""DAGs of ``data_quality`` drills: one task validates the table, records evidence, then reports.

Rules this module enforces: Great Expectations is imported only inside the task
(never at parse time, where it would cost 5-8 s per parse); a connection that
cannot be resolved is itself a recorded ERROR result (``CONNECTION_MISSING``),
not a task that dies without evidence; a FAIL or ERROR verdict fails the task
after the ledger row is written and Slack is told, so a failed expectation can
never leave the run green (the GX provider's issue 195).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drillbook.airflow.factory import drill_dag, drill_task

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from drillbook.catalogue import Catalogue
    from drillbook.drills.data_quality.catalogue import DataQualityDrill


def _doc(drill: DataQualityDrill) -> str:
    what = f"table `{drill.table}`" if drill.table else "the rows of a SQL query"
    sample = (
        f"{drill.sample_unexpected} unexpected values per expectation" if drill.sample_unexpected else "off"
    )
    return "\n".join(
        [
            f"Validates {what} on connection `{drill.connection}` with the Great Expectations suite "
            f"`{drill.suite}` (include/expectations/{drill.suite}.json), inside PostgreSQL.",
            "",
            f"* **Sampling of unexpected values:** {sample}; never for "
            f"{', '.join(f'`{c}`' for c in drill.sensitive_columns) or 'columns marked sensitive'}",
            "* A failed expectation is `DQ_EXPECTATION_FAILED`; a missing table/column is `DQ_VALIDATION_ERROR` (ERROR).",
        ]
    )


def validate_drill(drill: DataQualityDrill, catalogue: Catalogue) -> Any:
    """Run the drill with the drill's connection (task time); a missing connection is an ERROR result."""
    from drillbook.airflow.runtime import resolve_dsn
    from drillbook.drills.base import ResultBuilder
    from drillbook.drills.data_quality import run_data_quality
    from drillbook.drills.data_quality.suites import default_suites_dir
    from drillbook.errors import ConnectionNotConfigured

    try:
        dsn = resolve_dsn(drill.connection)
    except ConnectionNotConfigured as exc:
        builder = ResultBuilder(
            kind="data_quality", drill=drill.name, target=drill.table or "query", controls=drill.controls
        )
        builder.find("CONNECTION_MISSING", str(exc), subject=drill.connection)
        return builder.finish()
    return run_data_quality(
        drill_name=drill.name,
        dsn=dsn,
        table=drill.table,
        query=drill.query,
        suite=drill.suite,
        suites_dir=default_suites_dir(catalogue),
        sample=drill.sample_unexpected,
        sensitive=drill.sensitive_columns,
        controls=drill.controls,
    )


def build_dag(drill: DataQualityDrill, catalogue: Catalogue) -> DAG:
    """``dr_data_quality__<name>``: one ``validate`` task (validate → evidence → Slack → fail unless green)."""

    def validate(**context: Any) -> dict[str, Any]:
        from drillbook.airflow.runtime import report

        result = validate_drill(drill, catalogue)
        summary = report(result, drill=drill, catalogue=catalogue, context=context)
        return summary

    with drill_dag(drill, catalogue, doc_md=_doc(drill)) as dag:
        drill_task(validate, "validate")
    return dag
