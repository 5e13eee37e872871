"""Task-time glue: Connections → clients and DSNs, Airflow context → RunContext, result → evidence.

Everything here runs inside a task (never at parse time). Connections are
resolved through the provider hooks, so anything Airflow can hold a
Connection in (metadata DB, AIRFLOW_CONN_* variables, a secrets backend)
works. Every password or token resolved here is registered with ``redact``.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from drillbook.catalogue import Catalogue
from drillbook.errors import ConnectionNotConfigured, DrillbookError
from drillbook.result import DrillResult
from drillbook.run.context import RunContext
from drillbook.safety.redact import register_secret

log = logging.getLogger(__name__)


def get_connection(conn_id: str, *, conn_type: str | None = None) -> Any:
    """The Airflow Connection ``conn_id`` (its password registered with redact), or ConnectionNotConfigured."""
    from airflow.sdk import BaseHook

    from drillbook.resources.connections import connection_example

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # Airflow raises AirflowNotFoundException (moved between versions)
        example = f" to {connection_example(conn_type)}" if conn_type else ""
        raise ConnectionNotConfigured(
            f"Airflow connection {conn_id!r} is not defined ({type(exc).__name__}); create it in the UI "
            f"or set AIRFLOW_CONN_{conn_id.upper()}{example}"
        ) from None
    register_secret(conn.password)
    return conn


def settings() -> Any:
    """This task's settings, as its resolver's entry point (``airflow.resources``) read them."""
    return resolver().settings


def resolver() -> Any:
    """This task's resolver (the Airflow backend); the CLI builds the same one on the environment."""
    from drillbook.airflow.resources import airflow_resolver

    return airflow_resolver()


def resolve_dsn(conn_id: str) -> str:
    """A psycopg DSN for a postgres Connection (``drillbook.resources.resolver``: schema = database, extras)."""
    return str(resolver().postgres_dsn(conn_id))


def aws_client(conn_id: str, service: str, region: str | None = None) -> Any:
    """A boto3 client for an AWS Connection (region_name, endpoint_url, keys; else boto's default chain)."""
    return resolver().aws(conn_id).client(service, region)


def slack_connection(conn_id: str) -> Any:
    """The Slack Connection ``conn_id`` as the resolver reads it for the CLI too (every extra honoured)."""
    return resolver().slack(conn_id)


def slack_client(conn_id: str, **options: Any) -> Any:
    """A slack_sdk WebClient for a Slack Connection (retries bounded; 429 capped at its max_retry_after)."""
    return slack_connection(conn_id).web_client(**options)


def has_connection(conn_id: str) -> bool:
    return bool(resolver().has(conn_id))


def run_context(context: dict[str, Any], *, task_suffix: str = "") -> RunContext:
    """The ledger's identity of this task attempt, from the Airflow task context."""
    ti = context["ti"]
    dag_run = context.get("dag_run")
    run_type = str(getattr(dag_run, "run_type", "scheduled") or "scheduled").lower()
    try:
        log_url = ti.log_url
    except Exception:
        log_url = None
    return RunContext(
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id + task_suffix,
        map_index=int(getattr(ti, "map_index", -1) if getattr(ti, "map_index", None) is not None else -1),
        try_number=int(getattr(ti, "try_number", 1) or 1),
        trigger="manual" if "manual" in run_type else run_type.replace("dagruntype.", ""),
        log_url=log_url,
    )


def ledger_for(catalogue: Catalogue) -> Any:
    """The evidence ledger named by the catalogue (defaults.ledger_connection); it must exist."""
    return resolver().ledger(catalogue.defaults.ledger_connection)


def notifier_for(catalogue: Catalogue, drill: Any, *, ledger: Any = None) -> Any:
    """Slack when its Connection exists, else the local outbox (recorded in the ledger as not delivered)."""
    return resolver().notifier(catalogue=catalogue, drill=drill, ledger=ledger)


def report(
    result: DrillResult, *, drill: Any, catalogue: Catalogue, context: dict[str, Any], task_suffix: str = ""
) -> dict[str, Any]:
    """Evidence first, then notify, then judge: a FAIL/ERROR result fails the task (``DrillNotGreen``).

    The verdict judged is the recorded one (drillbook.run.pipeline): on a retry it is the
    first attempt's, which the ledger kept. Returns a small XCom-safe summary.
    """
    from drillbook.run.pipeline import record_and_report

    ctx = run_context(context, task_suffix=task_suffix)
    ledger = ledger_for(catalogue)
    reported = record_and_report(
        result, ctx=ctx, ledger=ledger, notifier=notifier_for(catalogue, drill, ledger=ledger)
    )
    record, result = reported.record, reported.result
    summary = {
        "verdict": result.verdict.value,
        "codes": result.codes(),
        "ledger_seq": getattr(record, "seq", None),
        "ledger_hash": getattr(record, "hash", None),
    }
    log.info(
        "drill %s: %s %s (ledger seq %s)",
        result.drill,
        result.verdict.value,
        summary["codes"],
        summary["ledger_seq"],
    )
    fail_unless_green(result)
    return summary


class DrillNotGreen(DrillbookError, AirflowFailException):
    """The drill ran and its verdict is FAIL or ERROR; it has been recorded and reported already.

    Failing the task makes the run red in the UI; the failure callback recognises
    this class and does not page a second time. No retry: re-running a drill that
    reported is not a fix.
    """


def fail_unless_green(result: DrillResult) -> None:
    """Fail the task for FAIL and ERROR so the run is red (after evidence is written and on-call told)."""
    if result.verdict.value in ("FAIL", "ERROR"):
        codes = ", ".join(result.codes()) or "no findings"
        raise DrillNotGreen(f"drill {result.drill!r} verdict {result.verdict.value}: {codes}")
