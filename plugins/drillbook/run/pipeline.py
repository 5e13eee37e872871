"""Evidence first, then notify; nothing is lost (principle 3).

``record_and_report`` is the one path a finished DrillResult takes, from the
CLI and from Airflow alike:
1. write the ledger record (idempotent per run context) — if the ledger cannot
   be reached the store keeps the record in the local evidence spool
   (``drillbook.ledger.spool``) and the report carries ``EVIDENCE_SPOOLED``;
   any other failure propagates: a drill without evidence must fail loudly;
2. hand the result and its record to the notifier; if delivery fails, record a
   ``NOTIFY_FAILED`` event row in the ledger and re-raise so the task fails.

Readers that judge the ledger (the watchdog, the digest) call ``replay_spool``
first, so a result waiting in this worker's spool is judged as recorded, not
as missing.

A retried attempt of the same task (same dag_id, run_id, task_id, map_index)
finds its result already recorded: the ledger keeps the first one, so that is
the one reported and judged (``Reported.result``), never the re-run's. Otherwise
a FAIL recorded on try 1 whose Slack post failed could turn into a green task
on try 2 without on-call ever being told.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from drillbook.result import DrillResult
from drillbook.run.context import RunContext

if TYPE_CHECKING:
    from drillbook.ledger.store import Ledger, LedgerRecord

log = logging.getLogger(__name__)


class Notifier(Protocol):
    """Anything that can report a recorded result (Slack, the local outbox)."""

    def notify(self, result: DrillResult, record: LedgerRecord | None, ctx: RunContext) -> Any: ...


@dataclass
class Reported:
    record: LedgerRecord | None
    result: DrillResult  # the result of record: what the ledger holds, notified and judged
    delivery: Any = None
    spooled: str | None = None  # the spool file when the ledger could not be written


def record_and_report(
    result: DrillResult,
    *,
    ctx: RunContext,
    ledger: Ledger | None,
    notifier: Notifier | None,
) -> Reported:
    """Record ``result`` in the ledger, then notify; see the module docstring."""
    from drillbook.errors import EvidenceSpooled

    spooled: EvidenceSpooled | None = None
    try:
        record = ledger.record(result, ctx) if ledger is not None else None
    except EvidenceSpooled as exc:
        log.warning("%s", exc)
        record, spooled = None, exc
        result = _with_spooled_finding(result, exc)
    if record is None and spooled is None:
        log.warning("no ledger configured: the result of %s is not recorded as evidence", result.drill)
    elif record is not None and not getattr(record, "created", True):
        recorded = DrillResult.model_validate(record.result)
        if recorded.verdict != result.verdict:
            log.warning(
                "retry of %s/%s: the ledger already holds %s (seq %s) for this task; reporting that, not this attempt's %s",
                ctx.dag_id,
                ctx.task_id,
                recorded.verdict.value,
                record.seq,
                result.verdict.value,
            )
        result = recorded
    result = _with_quarantine_finding(result, ledger)
    where = spooled.spool_path if spooled is not None else None
    if notifier is None:
        return Reported(record=record, result=result, spooled=where)
    try:
        delivery = notifier.notify(result, record, ctx)
    except (
        EvidenceSpooled
    ) as noted:  # delivered (or sent to the outbox); only its ledger note waits in the spool
        log.warning("%s", noted)
        delivery = None
    except Exception as exc:
        if ledger is not None:
            try:
                ledger.record_notify_failure(result, ctx, error=exc)
            except EvidenceSpooled as also:
                log.warning("%s", also)
        raise
    return Reported(record=record, result=result, delivery=delivery, spooled=where)


def _with_spooled_finding(result: DrillResult, exc: Any) -> DrillResult:
    """The result as reported: the same verdict, plus EVIDENCE_SPOOLED naming the spool (not what the ledger gets)."""
    from drillbook.findings import finding

    note = finding(
        "EVIDENCE_SPOOLED",
        f"the ledger could not be written; the {result.verdict.value} result of "
        f"{result.drill!r} waits in the evidence spool {exc.spool_path} and is replayed by the next run "
        "or `drillbook ledger flush`",
        subject=result.drill,
        detail={"spool": exc.spool_path},
    )
    return result.model_copy(update={"findings": [*result.findings, note]})


def _with_quarantine_finding(result: DrillResult, ledger: Any) -> DrillResult:
    """The result as reported, plus EVIDENCE_QUARANTINED while this worker's spool has a .rejected file."""
    spool: Any = getattr(ledger, "spool", None)
    count = spool.rejected() if spool is not None else 0
    if not count:
        return result
    from drillbook.findings import finding

    note = finding(
        "EVIDENCE_QUARANTINED",
        f"{count} evidence spool entr{'y' if count == 1 else 'ies'} could not be "
        f"replayed into the ledger and wait for an auditor in {spool.rejected_path}",
        subject=str(spool.rejected_path),
        detail={"rejected": str(spool.rejected_path), "entries": count},
    )
    return result.model_copy(update={"findings": [*result.findings, note]})


def replay_spool(ledger: Any, *, before: str) -> None:
    """Put what this worker spooled into the ledger before ``before`` judges it (an empty spool costs a stat)."""
    try:
        report = ledger.flush_spool()
    except OSError as exc:  # an unreadable spool must not stop the judge; the drill's own run named it
        log.warning("%s: the evidence spool could not be replayed: %s", before, exc)
        return
    if report.records or report.failed or report.unreadable or report.quarantined:
        log.warning(
            "%s: replayed %d spooled record(s) first (%d left, %d not replayable, %d quarantined)",
            before,
            len(report.records),
            report.remaining,
            len(report.failed) + len(report.unreadable),
            len(report.quarantined),
        )
