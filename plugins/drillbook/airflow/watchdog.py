"""The watchdog and digest DAGs: ``dr_watchdog`` (hourly) and one ``dr_digest__<preset>`` per digest schedule.

Rules this module enforces:
- DAG ids: ``dr_watchdog``, and ``dr_digest__daily`` / ``dr_digest__weekly``
  (one per entry of ``defaults.digest.schedules``; a cron entry becomes
  ``dr_digest__custom_<n>``); they carry the same policy as drill DAGs
  (``factory.drill_dag``): owner, retries, no catchup, one active run, tags,
  doc_md and the failure callback;
- parsing does no I/O and imports nothing heavy; the tasks resolve the ledger
  and Slack connections at run time through ``drillbook.airflow.runtime``;
- the DAG file builds from the catalogue's summary when one stands for the current file
  (``current_summary``: path and defaults, no models, no validation of every drill); the
  tasks then load the catalogue itself when they run. A catalogue with a problem has no
  summary, so the file fails to import with the loader's error exactly as before;
- the logic lives in ``drillbook.reporting.watchdog`` and ``drillbook.reporting.digest``; a task
  here only wires connections, the run context and the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from drillbook.airflow.factory import DagSubject, drill_dag, drill_task

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from drillbook.catalogue.models import Catalogue
    from drillbook.catalogue.summary import CatalogueSummary

WATCHDOG_DOC = """The watchdog reads the evidence ledger every hour and pages on-call when a drill
**did not run** (`DRILL_MISSED`), has produced **only ERROR results** for longer than the grace
(`DRILL_NEVER_VERIFIED`) or has **not passed** within its `max_unverified` (`DRILL_STALE`).
One message per incident: repeated only after `defaults.watchdog.renotify`, and a RESOLVED message
when it clears. State is kept in the ledger as `watchdog` records. Each run first re-sends, once, every
drill report and digest that never reached Slack (`NOTIFY_FAILED` / `NOTIFY_NOT_CONFIGURED`)."""

DIGEST_DOC = """Posts the scorecard of the period to the digest channel: per control and per drill, runs
expected vs run, pass rate, worst/median RTO and RPO against objectives, open findings, and whether the
ledger's hash chain verifies. The scorecard is also written to the ledger as a `digest` record."""


def digest_names(schedules: list[str]) -> dict[str, str]:
    """``{dag_id: schedule}`` of the digest DAGs."""
    # from catalogue.names, not the digest module: that one pulls in the ledger, which parsing does not need
    from drillbook.catalogue.names import PRESET_NAMES

    out: dict[str, str] = {}
    for n, schedule in enumerate(schedules, 1):
        name = PRESET_NAMES.get(schedule.strip(), f"custom_{n}")
        out[f"dr_digest__{name}"] = schedule
    return out


def _now_of(context: dict[str, Any]) -> datetime:
    """The scheduled time of this run (its period end), falling back to the clock for manual runs."""
    dag_run = context.get("dag_run")
    moment = getattr(dag_run, "run_after", None) or getattr(dag_run, "logical_date", None)
    if moment is None:
        return datetime.now(UTC)
    return moment.astimezone(UTC)


def _loaded(catalogue: Catalogue | CatalogueSummary) -> Catalogue:
    """The catalogue a task works with: the one the DAG was built from, or the current one if that was a summary."""
    from drillbook.catalogue.summary import CatalogueSummary

    if isinstance(catalogue, CatalogueSummary):
        from drillbook.airflow.current_catalogue import current_catalogue

        return current_catalogue()
    return catalogue


def build_watchdog_dag(source: Catalogue | CatalogueSummary) -> DAG:
    schedule = source.defaults.watchdog.schedule
    subject = DagSubject(
        kind="watchdog",
        name="watchdog",
        schedule=schedule,
        description="Pages on-call when a drill did not run, never verifies or went stale.",
    )
    with drill_dag(subject, source, doc_md=WATCHDOG_DOC, dag_id="dr_watchdog", schedule=schedule) as dag:

        def watchdog(**context: Any) -> dict[str, Any]:
            from drillbook.airflow import runtime
            from drillbook.airflow.notify import notifier_for_airflow
            from drillbook.reporting.watchdog import run_watchdog

            catalogue = _loaded(source)
            with runtime.ledger_for(catalogue) as ledger:
                run = run_watchdog(
                    catalogue,
                    ledger=ledger,
                    notifier=notifier_for_airflow(catalogue, ledger=ledger),
                    ctx=runtime.run_context(context),
                    now=datetime.now(UTC),
                )
            redo = run.redelivery
            return {
                "incidents": {k: [i.code for i in v] for k, v in run.incidents.items() if v},
                "posted": run.posted,
                "reports_redelivered": redo.delivered if redo is not None else 0,
                "reports_owed": redo.left if redo is not None else 0,
            }

        drill_task(watchdog, "watchdog")
    return dag


def build_digest_dag(source: Catalogue | CatalogueSummary, *, dag_id: str, schedule: str) -> DAG:
    subject = DagSubject(
        kind="digest",
        name=dag_id.split("__", 1)[1],
        schedule=schedule,
        description=f"Scorecard digest ({schedule}) for the digest channel.",
    )
    with drill_dag(subject, source, doc_md=DIGEST_DOC, dag_id=dag_id, schedule=schedule) as dag:

        def digest(**context: Any) -> dict[str, Any]:
            from drillbook.airflow import runtime
            from drillbook.airflow.notify import notifier_for_airflow
            from drillbook.ledger.checkpoint import KEY_CONNECTION, CheckpointSettings
            from drillbook.reporting.digest import run_digest

            catalogue = _loaded(source)
            # The checkpoint signing key: setting DRILLBOOK_CHECKPOINT_KEY (the task's settings, read by its
            # resolver's entry point), else the Airflow connection's password.
            keys = CheckpointSettings.from_settings(runtime.settings())
            if keys.private_key is None and runtime.has_connection(KEY_CONNECTION):
                keys = CheckpointSettings(
                    private_key=runtime.get_connection(KEY_CONNECTION).password,
                    public_key=keys.public_key,
                    path=keys.path,
                )
            with runtime.ledger_for(catalogue) as ledger:
                card = run_digest(
                    catalogue,
                    ledger=ledger,
                    notifier=notifier_for_airflow(catalogue, ledger=ledger),
                    ctx=runtime.run_context(context),
                    schedule=schedule,
                    now=_now_of(context),
                    checkpoints=keys,
                )
            return {d.drill: d.status for d in card.drills}

        drill_task(digest, "digest")
    return dag


def build_watchdog_dags(catalogue: Catalogue | None = None, *, which: str = "all") -> dict[str, DAG]:
    """``dr_watchdog`` and the ``dr_digest__*`` DAGs (``which``: "all", "watchdog" or "digest")."""
    from drillbook.safety.redact import install_log_redaction

    install_log_redaction()  # a DAG file is an entry point: its process's log lines pass through redact
    if which not in ("all", "watchdog", "digest"):
        raise ValueError(f"which must be 'all', 'watchdog' or 'digest', got {which!r}")
    source: Catalogue | CatalogueSummary
    if catalogue is None:
        from drillbook.airflow.current_catalogue import current_summary

        source = current_summary()
    else:
        source = catalogue
    dags: dict[str, DAG] = {}
    if which in ("all", "watchdog"):
        dags["dr_watchdog"] = build_watchdog_dag(source)
    if which in ("all", "digest"):
        for dag_id, schedule in digest_names(list(source.defaults.digest.schedules)).items():
            dags[dag_id] = build_digest_dag(source, dag_id=dag_id, schedule=schedule)
    return dags
