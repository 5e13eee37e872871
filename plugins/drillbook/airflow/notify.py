"""Airflow-level failures page on-call: a crashed task is never silence.

Rules this module enforces:
- ``on_failure_callback`` is a plain function (a Notifier object at DAG level
  breaks ``dag.test()``, apache/airflow#64649) and never raises: a callback
  that fails would hide the failure it was reporting;
- it reports the task that crashed with the exception summary (redacted),
  try number and log link, routed like an ERROR of the drill;
- it does not page twice: a task that failed with ``DrillNotGreen`` has
  already reported its verdict (FAIL and ERROR are always routed, see
  ``drillbook.notify.router``; only a drill with ``notify.enabled: false`` is
  silent, and the watchdog still pages about it), and at DAG level (where Airflow passes no
  exception) a run whose FAIL/ERROR result is in the ledger and was delivered
  is skipped; when in doubt (ledger unreachable) it pages;
- Slack when the catalogue's Slack connection exists, else the outbox;
- a drill run that failed before the drill recorded anything first gets an
  ERROR record with the cause (``drillbook.airflow.failure_evidence``), and
  the page carries that cause (never a bare ``task_failure``).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

ALREADY_REPORTED = ("DrillNotGreen",)


def notifier_for_airflow(catalogue: Any, *, ledger: Any = None) -> Any:
    """A Notifier for task code: Slack through the parsed Slack Connection, else the outbox."""
    from drillbook.airflow import runtime
    from drillbook.notify import build_notifier

    conn_id = catalogue.defaults.slack.connection
    connection = runtime.slack_connection(conn_id) if runtime.has_connection(conn_id) else None
    # the task's settings (read by the resolver's entry point, airflow.resources) place the outbox
    return build_notifier(
        catalogue=catalogue, connection=connection, ledger=ledger, outbox=runtime.settings().outbox
    )


def _catalogue() -> Any:
    from drillbook.airflow.current_catalogue import current_catalogue
    from drillbook.catalogue.models import Catalogue

    try:
        return current_catalogue()
    except Exception as exc:  # a broken catalogue must not silence the page
        log.warning(
            "catalogue unreadable in the failure callback (%s); using default routing", type(exc).__name__
        )
        return Catalogue()


def exception_summary(exc: BaseException | str | None) -> str | None:
    if exc is None:
        return None
    if isinstance(exc, BaseException):
        text = f"{type(exc).__name__}: {exc}"
    else:
        text = str(exc)
    return text.strip().splitlines()[0][:500] if text.strip() else None


def _reported_in_ledger(catalogue: Any, *, dag_id: str, run_id: str | None) -> bool:
    """True when this run's FAIL/ERROR result is in the ledger and its delivery did not fail."""
    if not run_id or "__" not in dag_id:
        return False
    from drillbook.airflow import runtime

    drill = dag_id.split("__", 1)[1]
    try:
        with runtime.ledger_for(catalogue) as ledger:
            rows = [
                r
                for r in ledger.query(drill=drill, newest_first=True, limit=50)
                if r.run_id == run_id and r.dag_id == dag_id
            ]
    except Exception as exc:  # when in doubt, page
        log.warning("ledger not readable from the failure callback (%s); paging anyway", type(exc).__name__)
        return False
    reported = any(r.record_type == "drill" and r.verdict in ("FAIL", "ERROR") for r in rows)
    failed_delivery = any(r.record_type == "notification" and "NOTIFY_FAILED" in r.codes for r in rows)
    return reported and not failed_delivery


def on_failure_callback(context: dict[str, Any]) -> None:
    """Report a failed task / DAG run to on-call (see the module docstring); never raises."""
    try:
        _report_failure(context)
    except Exception:
        log.exception("drillbook failure callback could not report the failure")


def _report_failure(context: dict[str, Any]) -> None:
    from drillbook.safety.redact import redact

    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None) or "unknown_dag"
    run_id = getattr(ti, "run_id", None) or context.get("run_id")
    exc = context.get("exception")
    if exc is not None and type(exc).__name__ in ALREADY_REPORTED:
        log.info(
            "%s failed with %s: the drill already reported its verdict; not paging twice",
            dag_id,
            type(exc).__name__,
        )
        return
    catalogue = _catalogue()
    cause = exception_summary(exc)
    recorded = None
    try:  # evidence first: a drill run that failed before it recorded anything gets its ERROR record
        from drillbook.airflow.failure_evidence import record_not_run

        recorded = record_not_run(context, catalogue=catalogue, exception=cause)
    except Exception as error:  # the ledger is unreachable or misconfigured: still page, without the record
        log.warning(
            "could not record the failed run of %s in the ledger (%s); paging without it",
            dag_id,
            redact(str(error))[:300],
        )
    if recorded is not None:
        cause = recorded  # the page says what the ledger says
    elif exc is None and _reported_in_ledger(catalogue, dag_id=dag_id, run_id=run_id):
        log.info(
            "%s run %s: its FAIL/ERROR is in the ledger and was delivered; not paging twice", dag_id, run_id
        )
        return
    try:
        log_url = ti.log_url if ti is not None else None
    except Exception:  # a missing base URL must not stop the page
        log_url = None
    reason = context.get("reason")
    notifier = notifier_for_airflow(catalogue)
    delivery = notifier.notify_task_failure(
        dag_id=dag_id,
        task_id=getattr(ti, "task_id", None),
        run_id=run_id,
        try_number=getattr(ti, "try_number", None),
        exception=cause,
        log_url=log_url,
        reason=str(reason) if reason else None,
    )
    log.warning("reported the failure of %s to %s (%s)", dag_id, delivery.channel, redact(delivery.transport))
