"""The scorecard digest: what an auditor's periodic review reads, per control and per drill.

Rules this module enforces (``run_digest`` does the I/O; ``drillbook.reporting.scoring`` scores the
period from the aggregates ``drillbook.reporting.aggregate`` has the database compute):
- the chain is verified incrementally (from the newest trusted signed
  checkpoint, which the previous digest signed) by every digest except the
  weekly one, which verifies in full (``evidence verify --full``,
  ``FULL_VERIFY``): a change to a record older than the newest checkpoint is
  found by the next weekly digest, not the next daily one;
- every digest signs a checkpoint of the head after recording its own row and
  posts the full head hash, signed or plainly UNSIGNED, so the head exists
  outside the database; it compares the head the previous digest posted
  with the chain and says in the post when that record is gone or changed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from drillbook.catalogue.common import PRESET_NAMES, previous_run
from drillbook.findings import finding
from drillbook.ledger.checkpoint import CheckpointSettings
from drillbook.reporting.aggregate import aggregate_sql
from drillbook.reporting.scorecard import Scorecard
from drillbook.reporting.scoring import build_scorecard

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue
    from drillbook.ledger.checkpoint import Checkpoint
    from drillbook.ledger.store import Ledger
    from drillbook.notify.notifier import Notifier
    from drillbook.run.context import RunContext


#: The weekly digest (``dr_digest__weekly``, in the default ``digest.schedules``) re-hashes the whole chain
#: (``evidence verify --full``); every other digest walks from the newest trusted signed checkpoint, so it
#: costs what its period costs (issue 14: daily < 2 s, monthly < 5 s at a million records).
FULL_VERIFY = ("@weekly",)


def full_verify(schedule: str) -> bool:
    """Whether the digest on ``schedule`` verifies the whole chain (see ``FULL_VERIFY``)."""
    return schedule in FULL_VERIFY


def digest_period(schedule: str, *, end: datetime, timezone: str = "UTC") -> tuple[datetime, datetime]:
    """The period a digest on ``schedule`` covers when it runs at ``end``: from the previous firing to ``end``."""
    local_end = end.astimezone(ZoneInfo(timezone))
    start = previous_run(schedule, local_end - timedelta(seconds=1))
    return start.astimezone(UTC), end.astimezone(UTC)


def digest_row(scorecard: Scorecard, *, name: str) -> Any:
    """The 'digest' ledger row: the scorecard as sent, so the review itself is evidence."""
    from drillbook.drills.base import ResultBuilder

    builder = ResultBuilder(
        kind="digest", drill=name, target="ledger", controls=[c.control for c in scorecard.controls]
    )
    builder.checked(len(scorecard.drills))
    builder.details["scorecard"] = {
        "start": scorecard.start.isoformat(),
        "end": scorecard.end.isoformat(),
        "ledger": scorecard.ledger_summary,
        "drills": {
            d.drill: {"expected": d.expected, "runs": d.runs, "passes": d.passes, "status": d.status}
            for d in scorecard.drills
        },
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
    state = (
        "missing (rows cut from the end)"
        if record is None
        else f"now {now_hash[:12] if now_hash else '?'}… (rewritten)"
    )
    return text + (
        f" · PREVIOUS DIGEST HEAD seq={previous.seq} {previous.hash} IS NOT IN THE CHAIN: record "
        f"{previous.seq} is {state}"
    )


def run_digest(
    catalogue: Catalogue,
    *,
    ledger: Ledger,
    notifier: Notifier,
    ctx: RunContext,
    schedule: str,
    checkpoints: CheckpointSettings,
    now: datetime | None = None,
) -> Scorecard:
    """Build the scorecard of the period ending ``now``, record it, then post it to the digest channel.

    ``checkpoints``: the entry point's ``CheckpointSettings.from_settings(settings)`` (signing key, trusted key).
    """
    from drillbook.notify.render_digest import render_digest
    from drillbook.run.pipeline import replay_spool

    now = now or datetime.now(UTC)
    replay_spool(ledger, before="digest")  # a result waiting in this worker's spool counts as run
    tz = catalogue.defaults.timezone
    start, end = digest_period(schedule, end=now, timezone=tz)
    name = PRESET_NAMES.get(schedule, "custom")
    settings = checkpoints
    previous = _previous_digest_head(ledger, settings)  # the head the last digest posted
    # Aggregated by the database (never the period's records in Python); the chain walked from the newest
    # trusted signed checkpoint, or in full by the digests that run `evidence verify --full` (FULL_VERIFY).
    aggregates = aggregate_sql(
        ledger.connection, drills=[d.name for d in catalogue.drills if d.enabled], start=start, end=end
    )
    verify = ledger.verify(checkpoints=settings, full=full_verify(schedule))
    from drillbook.evidence.population_sql import missed_by_drill_sql

    # matched in SQL (each distinct schedule's due times computed once): streaming 82k runs of a month into
    # Python's ``match`` cost 2.7 s at 1M records; tests/evidence/test_population_sql.py holds the two equal
    missed = missed_by_drill_sql(ledger.connection, catalogue, start=start, end=end, as_of=now)
    scorecard = build_scorecard(
        catalogue,
        (),
        start=start,
        end=end,
        verify=verify,
        title=f"{name} scorecard",
        aggregates=aggregates,
        missed=missed,
    )
    row = digest_row(scorecard, name=name)
    if not settings.private_key:
        row.findings.append(finding("CHECKPOINT_UNSIGNED", subject="ledger"))
    ledger.record_event("digest", row, ctx)  # evidence first
    # Then sign the head (which now includes the digest row) and publish the full hash outside the database.
    scorecard.ledger_summary += head_text(
        ledger, ledger.checkpoint(source=f"digest:{name}", settings=settings), previous
    )
    if previous is not None and "NOT IN THE CHAIN" in scorecard.ledger_summary:
        scorecard.ledger_ok = False
    try:
        notifier.post_digest(render_digest(scorecard))
    except Exception as exc:
        ledger.record_notify_failure(row, ctx, error=exc)
        raise
    return scorecard
