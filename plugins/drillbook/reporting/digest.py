"""The scorecard digest: what an auditor's periodic review reads, per control and per drill.

Rules this module enforces (``build_scorecard`` is pure; ``run_digest`` does the I/O):
- a run is one (dag_id, run_id) of a drill with at least one 'drill' record in
  the period; its verdict is the worst of its records (ERROR > FAIL > PASS), so
  a mapped drill with one bad target is not a pass;
- runs expected come from the drill's cron schedule over the period, in the
  catalogue's timezone; runs below expected are shown, never hidden;
- pass rate = passing runs / runs; RTO and RPO are shown worst and median
  against the objective the drill recorded;
- a control is VERIFIED only when every enabled drill mapped to it ran in the
  period and its newest run passed; any drill that did not run makes it NOT
  RUN, any newest FAIL/ERROR makes it AT RISK;
- the ledger's verify status is part of every scorecard: evidence that does
  not verify is reported before anything else, in the header; and when the
  chain does not verify (or was not checked) no drill or control is shown
  VERIFIED: a broken chain may hold forged PASS rows, so what would have been
  VERIFIED is UNVERIFIABLE (with the seq where the chain breaks);
- every digest signs a checkpoint of the head after recording its own row and
  posts the full head hash, signed or plainly UNSIGNED, so the head exists
  outside the database; it compares the head the previous digest posted
  with the chain and says in the post when that record is gone or changed.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from drillbook.catalogue.common import cron_of, previous_run
from drillbook.findings import finding
from drillbook.ledger.checkpoint import CheckpointSettings
from drillbook.reporting.scorecard import UNVERIFIABLE, ControlScore, DrillScore, Scorecard

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue
    from drillbook.ledger.checkpoint import Checkpoint
    from drillbook.ledger.records import LedgerRecord, VerifyReport
    from drillbook.ledger.store import Ledger
    from drillbook.notify.notifier import Notifier
    from drillbook.run.context import RunContext

_VERDICT_RANK = {"PASS": 0, "SKIPPED": 1, "FAIL": 2, "ERROR": 3}
PRESET_NAMES = {"@hourly": "hourly", "@daily": "daily", "@midnight": "daily", "@weekly": "weekly", "@monthly": "monthly",
                "@quarterly": "quarterly", "@yearly": "yearly", "@annually": "yearly"}


def expected_runs(schedule: str, *, start: datetime, end: datetime, timezone: str = "UTC") -> int:
    """How many times ``schedule`` fires in [start, end)."""
    from croniter import croniter

    tz = ZoneInfo(timezone)
    it = croniter(cron_of(schedule), start.astimezone(tz) - timedelta(microseconds=1))
    count = 0
    for _ in range(100_000):  # bounded: a minutely cron over a year is 525k, a digest period is at most a month
        moment = it.get_next(datetime)
        if moment >= end.astimezone(tz):
            break
        count += 1
    return count


def digest_period(schedule: str, *, end: datetime, timezone: str = "UTC") -> tuple[datetime, datetime]:
    """The period a digest on ``schedule`` covers when it runs at ``end``: from the previous firing to ``end``."""
    local_end = end.astimezone(ZoneInfo(timezone))
    start = previous_run(schedule, local_end - timedelta(seconds=1))
    return start.astimezone(UTC), end.astimezone(UTC)


def _objective(result: dict[str, Any], name: str) -> float | None:
    objectives = result.get("objectives") or {}
    value = objectives.get(f"{name}_seconds", objectives.get(name))
    return float(value) if value is not None else None


def _worst_median(values: list[float]) -> tuple[float, float] | None:
    return (max(values), float(statistics.median(values))) if values else None


def build_scorecard(catalogue: Catalogue, records: Iterable[LedgerRecord], *, start: datetime, end: datetime,
                    verify: VerifyReport | None, title: str = "scorecard") -> Scorecard:
    """Score every enabled drill and control from the 'drill' records of [start, end)."""
    drills = [d for d in catalogue.drills if d.enabled]
    scores = {d.name: DrillScore(drill=d.name, kind=d.kind, controls=list(d.controls),
                                 expected=expected_runs(d.schedule, start=start, end=end, timezone=catalogue.defaults.timezone))
              for d in drills}
    runs: dict[str, dict[tuple[str, str], list[LedgerRecord]]] = {}
    for record in records:
        if record.record_type != "drill" or record.drill not in scores or not (start <= record.recorded_at < end):
            continue
        runs.setdefault(record.drill, {}).setdefault((record.dag_id, record.run_id), []).append(record)
    for name, by_run in runs.items():
        score = scores[name]
        ordered = sorted(by_run.values(), key=lambda recs: max(r.seq for r in recs))
        verdicts = [max((r.verdict for r in recs), key=lambda v: _VERDICT_RANK.get(v, 3)) for recs in ordered]
        score.runs, score.passes, score.newest_verdict = len(ordered), verdicts.count("PASS"), verdicts[-1]
        newest = ordered[-1]
        score.open_findings = sorted({f["code"] for r in newest for f in r.result.get("findings", []) if f.get("severity") != "info"})
        all_records = [r for recs in ordered for r in recs]
        for name_, attr in (("rto", "rto_seconds"), ("rpo", "rpo_seconds")):
            values = [float(v) for r in all_records if (v := (r.result.get("measurements") or {}).get(attr)) is not None]
            objectives = [o for r in all_records if (o := _objective(r.result, name_)) is not None]
            setattr(score, name_, _worst_median(values))
            setattr(score, f"{name_}_objective", objectives[-1] if objectives else None)
    if verify is None:
        ledger_ok, summary, unverifiable = None, "ledger not verified", "ledger not verified"
    elif verify.ok:
        ledger_ok, summary, unverifiable = True, f"ledger verified: {verify.checked} records, chain intact (head {(verify.head_hash or '')[:12]})", None
    else:
        ledger_ok, summary = False, f"LEDGER DOES NOT VERIFY: record seq {verify.first_bad_seq} {verify.reason}: {verify.message}"
        unverifiable = f"ledger chain broken at seq {verify.first_bad_seq}"
    for score in scores.values():
        score.unverifiable = unverifiable
    controls: list[ControlScore] = []
    for control in sorted({c for d in drills for c in d.controls}):
        members = [scores[d.name] for d in drills if control in d.controls]
        statuses = {m.status for m in members}
        status = next((s for s in ("NOT RUN", "AT RISK", UNVERIFIABLE) if s in statuses), "VERIFIED")
        controls.append(ControlScore(control=control, drills=[m.drill for m in members], expected=sum(m.expected for m in members),
                                     runs=sum(m.runs for m in members), passes=sum(m.passes for m in members), status=status))
    return Scorecard(title=title, start=start, end=end, drills=list(scores.values()), controls=controls,
                     ledger_ok=ledger_ok, ledger_summary=summary, unverifiable=unverifiable)


def digest_row(scorecard: Scorecard, *, name: str) -> Any:
    """The 'digest' ledger row: the scorecard as sent, so the review itself is evidence."""
    from drillbook.drills.base import ResultBuilder

    builder = ResultBuilder(kind="digest", drill=name, target="ledger", controls=[c.control for c in scorecard.controls])
    builder.checked(len(scorecard.drills))
    builder.details["scorecard"] = {
        "start": scorecard.start.isoformat(), "end": scorecard.end.isoformat(), "ledger": scorecard.ledger_summary,
        "drills": {d.drill: {"expected": d.expected, "runs": d.runs, "passes": d.passes, "status": d.status} for d in scorecard.drills},
        "controls": {c.control: c.status for c in scorecard.controls},
    }
    return builder.finish()


def _previous_digest_head(ledger: Ledger, settings: CheckpointSettings) -> Checkpoint | None:
    """The newest digest checkpoint in the database or in the outside copy (which survives a wiped table)."""
    from drillbook.ledger import checkpoint as cpmod

    outside, _ = cpmod.read_outside(settings.path)
    found = [c for c in outside if c.source.startswith("digest")]
    in_db = ledger.newest_checkpoint(source_prefix="digest")
    return cpmod.newest(found + ([in_db] if in_db else []))


def head_text(ledger: Ledger, cp: Checkpoint, previous: Checkpoint | None) -> str:
    """The head as posted (full hash, signed or UNSIGNED) and whether the last digest's head is still in the chain."""
    how = f"signed by key {cp.key_id}" if cp.signed else "UNSIGNED: no checkpoint key configured"
    text = f" · head seq={cp.seq} {cp.hash} ({how})"
    if previous is None:
        return text + " · no earlier digest head to compare with"
    record = ledger.get(previous.seq) if previous.seq else None
    now_hash = record.hash if record is not None else None
    if previous.seq == 0 or now_hash == previous.hash:
        return text + f" · previous digest head seq={previous.seq} {previous.hash[:12]}… still in the chain"
    state = "missing (rows cut from the end)" if record is None else f"now {now_hash[:12] if now_hash else '?'}… (rewritten)"
    return text + (f" · PREVIOUS DIGEST HEAD seq={previous.seq} {previous.hash} IS NOT IN THE CHAIN: record "
                   f"{previous.seq} is {state}")


def run_digest(catalogue: Catalogue, *, ledger: Ledger, notifier: Notifier, ctx: RunContext, schedule: str,
               now: datetime | None = None, checkpoints: CheckpointSettings | None = None) -> Scorecard:
    """Build the scorecard of the period ending ``now``, record it, then post it to the digest channel."""
    from drillbook.ledger.query import Filter
    from drillbook.notify.render import render_digest
    from drillbook.run.pipeline import replay_spool

    now = now or datetime.now(UTC)
    replay_spool(ledger, before="digest")  # a result waiting in this worker's spool counts as run
    tz = catalogue.defaults.timezone
    start, end = digest_period(schedule, end=now, timezone=tz)
    name = PRESET_NAMES.get(schedule, "custom")
    settings = checkpoints or CheckpointSettings.from_env()
    previous = _previous_digest_head(ledger, settings)  # the head the last digest posted
    records = ledger.iter_records(Filter.build(since=start, until=end, record_type="drill"))  # streamed
    scorecard = build_scorecard(catalogue, records, start=start, end=end, verify=ledger.verify(checkpoints=settings),
                                title=f"{name} scorecard")
    row = digest_row(scorecard, name=name)
    if not settings.private_key:
        row.findings.append(finding("CHECKPOINT_UNSIGNED", subject="ledger"))
    ledger.record_event("digest", row, ctx)  # evidence first
    # Then sign the head (which now includes the digest row) and publish the full hash outside the database.
    scorecard.ledger_summary += head_text(ledger, ledger.checkpoint(source=f"digest:{name}", settings=settings), previous)
    if previous is not None and "NOT IN THE CHAIN" in scorecard.ledger_summary:
        scorecard.ledger_ok = False
    try:
        notifier.post_digest(render_digest(scorecard))
    except Exception as exc:
        ledger.record_notify_failure(row, ctx, error=exc)
        raise
    return scorecard
