"""Which reports are still owed to Slack: the delivery state, derived from ledger rows only.

The rows that change that state (``NOTIFY_REDELIVERED``, ``NOTIFY_FAILED`` of a re-send) are built here
too, so the notifier and the re-sender both depend on this module and not on each other.

Rules this module enforces:
- the state lives in the ledger (hash-chained, shared by every worker), not
  in a local file: a report is *owed* when a ``notification`` row says its
  delivery failed (``NOTIFY_FAILED``) or went to the outbox only
  (``NOTIFY_NOT_CONFIGURED``), and no later ``notification`` row with
  ``NOTIFY_REDELIVERED`` names it. Rows are matched on the task that wrote the
  report, (dag_id, run_id, task_id, map_index): every try of one task reports
  the same ledger record, so two failed tries owe one report, not two;
- a re-send writes its outcome as a ``notification`` row whose
  ``details.redelivery`` names the reports it covers (``of``: seq and task
  key, one or many for a summary) and whether they were delivered; a failed
  re-send counts as an attempt and the report stays owed;
- only 'drill' and 'digest' records are owed here: watchdog incidents keep
  their own state (``drillbook.reporting.incident_state``), so rows of ``dr_watchdog`` are not
  read as owed reports;
- reading is bounded by the number of undelivered reports: delivered ones
  are recognised by their key without looking their record up.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from drillbook.notify.blocks import clip
from drillbook.notify.history import report_id_of
from drillbook.safety.redact import redact

if TYPE_CHECKING:
    from drillbook.ledger.records import LedgerRecord
    from drillbook.ledger.store import Ledger
    from drillbook.result import DrillResult

NOT_DELIVERED = ("NOTIFY_FAILED", "NOTIFY_NOT_CONFIGURED")
REDELIVERED = "NOTIFY_REDELIVERED"
WATCHDOG_DAG = "dr_watchdog"
LOOKBACK_ROWS = 500  # rows of one drill read back from a failure note to find the record it reported

TaskKey = tuple[str, str, str, int]


def task_key(record: Any) -> TaskKey:
    """The task that wrote a row: (dag_id, run_id, task_id, map_index)."""
    return (str(record.dag_id), str(record.run_id), str(record.task_id), int(record.map_index))


def redelivery_of(record: LedgerRecord) -> dict[str, Any] | None:
    """``details.redelivery`` of a re-send's notification row, or None for any other row."""
    value = (record.result.get("details") or {}).get("redelivery")
    return value if isinstance(value, dict) else None


@dataclass
class Owed:
    """One report nobody has seen yet: the ledger record it reports and the failed attempts so far."""

    record: LedgerRecord
    notes: list[LedgerRecord] = field(default_factory=list)  # the NOTIFY_FAILED / NOTIFY_NOT_CONFIGURED rows
    failed_resends: int = 0

    @property
    def report_id(self) -> str:
        return report_id_of(self.record)

    @property
    def key(self) -> TaskKey:
        return task_key(self.record)

    @property
    def attempts(self) -> int:
        """Failed deliveries so far: the task's own tries and the re-sends."""
        return len(self.notes) + self.failed_resends

    @property
    def reasons(self) -> list[str]:
        return sorted({c for n in self.notes for c in n.codes if c in NOT_DELIVERED})

    @property
    def first_failed_at(self) -> datetime:
        return min(n.recorded_at for n in self.notes)

    @property
    def last_error(self) -> str:
        """What the newest failure row said (already redacted when it was written)."""
        note = max(self.notes, key=lambda n: n.seq)
        findings = note.result.get("findings") or [{}]
        return str(findings[0].get("message", ""))

    @property
    def pages(self) -> bool:
        """FAIL and ERROR drill reports page on-call one by one; the rest are summarised."""
        return self.record.record_type == "drill" and self.record.verdict in ("FAIL", "ERROR")


@dataclass
class DeliveryState:
    """Owed reports (oldest first), and what the ledger says was delivered or failed on re-send."""

    owed: list[Owed]
    delivered: set[TaskKey]
    failed_resends: Counter[TaskKey]


def delivery_state(ledger: Ledger) -> DeliveryState:
    """Read every ``notification`` row (streamed) and work out which reports are still owed."""
    from drillbook.ledger.query import Filter

    failures: dict[TaskKey, list[LedgerRecord]] = {}
    delivered: set[TaskKey] = set()
    failed: Counter[TaskKey] = Counter()
    for note in ledger.iter_records(Filter.build(record_type="notification")):
        redelivery = redelivery_of(note)
        if redelivery is not None:
            keys = [_key_of(item) for item in redelivery.get("of") or []]
            if REDELIVERED in note.codes:
                delivered.update(keys)
            else:
                failed.update(keys)
            continue
        if note.dag_id == WATCHDOG_DAG or not any(code in NOT_DELIVERED for code in note.codes):
            continue
        failures.setdefault(task_key(note), []).append(note)
    owed: list[Owed] = []
    for key, notes in failures.items():
        if key in delivered:
            continue
        record = reported_record(ledger, notes)
        if record is None or record.record_type not in ("drill", "digest"):
            continue
        owed.append(Owed(record=record, notes=notes, failed_resends=failed[key]))
    owed.sort(key=lambda o: o.record.seq)
    return DeliveryState(owed=owed, delivered=delivered, failed_resends=failed)


def delivered_or_failed(ledger: Ledger, record: LedgerRecord) -> tuple[bool, int]:
    """For one reported record: (was it re-delivered already?, how many failure rows name its task)."""
    from drillbook.ledger.query import Filter

    key = task_key(record)
    delivered, failures = False, 0
    for note in ledger.iter_records(Filter.build(record_type="notification", since=record.recorded_at)):
        redelivery = redelivery_of(note)
        if redelivery is not None:
            if REDELIVERED in note.codes and key in {_key_of(i) for i in redelivery.get("of") or []}:
                delivered = True
        elif task_key(note) == key and any(code in NOT_DELIVERED for code in note.codes):
            failures += 1
    return delivered, failures


def reported_record(ledger: Ledger, notes: list[LedgerRecord]) -> LedgerRecord | None:
    """The record a failure note is about: named in ``details.report_of``, else the same task's row before it."""
    from drillbook.ledger.query import Filter

    for note in notes:
        named = (note.result.get("details") or {}).get("report_of") or {}
        if isinstance(named.get("seq"), int):
            found = ledger.get(named["seq"])
            if found is not None and found.hash == named.get("hash"):
                return found
    note = min(notes, key=lambda n: n.seq)
    key = task_key(note)
    flt = Filter.build(drill=note.drill, kind=note.kind, until=note.recorded_at + timedelta(seconds=1))
    for row in ledger.iter_records(flt, newest_first=True, limit=LOOKBACK_ROWS):
        if row.seq < note.seq and row.record_type in ("drill", "digest", "watchdog") and task_key(row) == key:
            return row
    return None


def _key_of(item: Any) -> TaskKey:
    key = item.get("key") if isinstance(item, dict) else None
    if not isinstance(key, list | tuple) or len(key) != 4:
        return ("", "", "", -1)
    return (str(key[0]), str(key[1]), str(key[2]), int(key[3]))


def _of(records: list[LedgerRecord]) -> list[dict[str, Any]]:
    return [{"seq": r.seq, "key": list(task_key(r)), "report_id": report_id_of(r)} for r in records]


def redelivered_row(
    records: list[LedgerRecord],
    *,
    channel: str,
    ts: str,
    how: str,
    attempts: int,
    kind: str,
    drill: str,
    what: str,
) -> DrillResult:
    """The ``NOTIFY_REDELIVERED`` row: these reports reached ``channel`` late (verdict derived: PASS)."""
    from drillbook.drills.base import ResultBuilder

    builder = ResultBuilder(
        kind=kind, drill=drill, target=channel, controls=sorted({c for r in records for c in r.controls})
    )
    builder.checked()  # Slack answered with the message's ts, or the history shows it: delivery confirmed
    seqs = ", ".join(f"#{r.seq}" for r in records[:20]) + (
        f" and {len(records) - 20} more" if len(records) > 20 else ""
    )
    builder.find(
        "NOTIFY_REDELIVERED",
        f"{what} (ledger {seqs}) {how} in {channel} (ts {ts}) after {attempts} failed attempt(s)",
        subject=drill,
        detail={"channel": channel, "ts": ts, "how": how},
    )
    builder.details["redelivery"] = {
        "of": _of(records),
        "delivered": True,
        "channel": channel,
        "ts": ts,
        "how": how,
    }
    return builder.finish()


def resend_failed_row(
    record: LedgerRecord, *, channel: str, error: str, also: list[LedgerRecord] | None = None
) -> DrillResult:
    """The ``NOTIFY_FAILED`` row of a re-send that failed (of ``record`` and ``also``): the reports stay owed."""
    from drillbook.drills.base import ResultBuilder

    builder = ResultBuilder(
        kind=record.kind, drill=record.drill, target=channel, controls=list(record.controls)
    )
    builder.checked()  # the attempt ran; it failed
    message = clip(redact(error), 300)
    builder.find(
        "NOTIFY_FAILED",
        f"re-sending the {record.verdict} report of {record.drill!r} (ledger #{record.seq}) failed: {message}",
        subject=record.drill,
        detail={"error": message, "drill_verdict": record.verdict},
    )
    builder.details["redelivery"] = {
        "of": _of([record, *(also or [])]),
        "delivered": False,
        "channel": channel,
    }
    builder.details["reported_verdict"] = record.verdict
    return builder.finish()
