"""Score a period: every enabled drill and control of the catalogue, from the aggregates and the ledger's verify.

Rules this module enforces (``build_scorecard`` is pure):
- runs expected come from the drill's cron schedule over the period, in the
  catalogue's timezone, counted by ``drillbook.evidence.population`` (the
  auditors' population); runs below expected are shown, never hidden;
- pass rate = passing runs / runs; RTO and RPO are shown worst and median
  against the objective the drill recorded (``drillbook.reporting.aggregate``);
- drill and control status follow ``drillbook.evidence.controls.status_of``, the
  rule of the auditors' controls view: a missed occurrence or a FAIL/ERROR run
  in the period is EXCEPTIONS, so a drill that ran once of 19 expected times is
  never VERIFIED; no run is NOT RUN, a newest FAIL/ERROR is AT RISK;
- the ledger's verify status is part of every scorecard: evidence that does
  not verify is reported before anything else, in the header; and when the
  chain does not verify (or was not checked) no drill or control is shown
  VERIFIED: a broken chain may hold forged PASS rows, so what would have been
  VERIFIED is UNVERIFIABLE (with the seq where the chain breaks).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from drillbook import verdict_order
from drillbook.catalogue.common import in_force_since
from drillbook.evidence.controls import status_of
from drillbook.reporting.aggregate import DrillAggregate, aggregate_records
from drillbook.reporting.scorecard import ControlScore, DrillScore, Scorecard

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue
    from drillbook.ledger.records import LedgerRecord, VerifyReport


def expected_runs(
    schedule: str, *, start: datetime, end: datetime, timezone: str = "UTC", since: datetime | None = None
) -> int:
    """How many times ``schedule`` fires in [start, end) and not before ``since`` (the population's rule, DST
    included)."""
    from drillbook.evidence.population import count_occurrences

    if since is not None and since > start:
        start = since
    if start >= end:
        return 0
    return count_occurrences(schedule, start=start, end=end, timezone=timezone)


def _missed(
    catalogue: Catalogue, drill: str, run_times: list[datetime], *, start: datetime, end: datetime
) -> int:
    """Expected occurrences of ``drill`` in [start, end) with no run in their window (the population's rule)."""
    from drillbook.evidence.population import MISSED, Run, match, series_of

    series = next(s for s in series_of(catalogue) if s.drill == drill and s.kind != "negative")
    runs = [
        Run(
            drill=drill,
            kind=series.kind,
            dag_id="",
            run_id="",
            first_at=t,
            last_at=t,
            verdict="PASS",
            rows=1,
            first_seq=0,
            last_seq=0,
        )
        for t in sorted(run_times)
    ]
    occurrences = match(
        series,
        runs,
        start=start,
        end=end,
        as_of=end,
        grace=catalogue.defaults.watchdog.grace,
        timezone=catalogue.defaults.timezone,
    )
    return sum(1 for occ in occurrences if occ.outcome == MISSED)


def build_scorecard(
    catalogue: Catalogue,
    records: Iterable[LedgerRecord],
    *,
    start: datetime,
    end: datetime,
    verify: VerifyReport | None,
    title: str = "scorecard",
    aggregates: dict[str, DrillAggregate] | None = None,
    missed: dict[str, int] | None = None,
) -> Scorecard:
    """Score every enabled drill and control from the 'drill' records of [start, end).

    ``aggregates`` (from ``aggregate_sql``) replaces ``records``: the digest passes them, tests pass records.
    ``missed`` (from ``drillbook.evidence.population_sql.missed_by_drill_sql``, counted by the database) goes with
    ``aggregates``; with records in hand it is counted from them.
    """
    drills = [d for d in catalogue.drills if d.enabled]
    scores = {
        d.name: DrillScore(
            drill=d.name,
            kind=d.kind,
            controls=list(d.controls),
            expected=expected_runs(
                d.schedule,
                start=start,
                end=end,
                timezone=catalogue.defaults.timezone,
                since=in_force_since(d.since, catalogue.defaults.timezone),
            ),
        )
        for d in drills
    }
    if aggregates is None:
        aggregates = aggregate_records(records, drills=scores, start=start, end=end)
    for name, agg in aggregates.items():
        if name not in scores:
            continue
        score = scores[name]
        score.runs, score.passes, score.newest_verdict = agg.runs, agg.passes, agg.newest_verdict
        score.open_findings = list(agg.open_findings)
        score.rto, score.rto_objective, score.rpo, score.rpo_objective = (
            agg.rto,
            agg.rto_objective,
            agg.rpo,
            agg.rpo_objective,
        )
        score.failed = agg.failed
    if verify is None:
        ledger_ok, summary, unverifiable = None, "ledger not verified", "ledger not verified"
    elif verify.ok:
        how = (
            f"{verify.checked} records after the signed checkpoint seq {verify.since_seq} (incremental)"
            if verify.since_seq is not None
            else f"{verify.checked} records"
        )
        ledger_ok, summary, unverifiable = (
            True,
            f"ledger verified: {how}, chain intact (head {(verify.head_hash or '')[:12]})",
            None,
        )
    else:
        ledger_ok, summary = (
            False,
            f"LEDGER DOES NOT VERIFY: record seq {verify.first_bad_seq} {verify.reason}: {verify.message}",
        )
        unverifiable = f"ledger chain broken at seq {verify.first_bad_seq}"
    for score in scores.values():
        score.unverifiable = unverifiable
        if missed is not None:
            score.missed = missed.get(score.drill, 0)
        else:
            starts = aggregates[score.drill].run_starts if score.drill in aggregates else []
            score.missed = _missed(catalogue, score.drill, starts or [], start=start, end=end)
    controls: list[ControlScore] = []
    for control in sorted({c for d in drills for c in d.controls}):
        members = [scores[d.name] for d in drills if control in d.controls]
        latest = [m.newest_verdict for m in members if m.newest_verdict]
        numbers = {
            "expected": sum(m.expected for m in members),
            "runs": sum(m.runs for m in members),
            "missed": sum(m.missed for m in members),
            "failed": sum(m.failed for m in members),
        }
        status = status_of(
            **numbers,
            newest_verdict=verdict_order.worst(latest),
            unverifiable=unverifiable,
        )
        controls.append(
            ControlScore(
                control=control,
                drills=[m.drill for m in members],
                passes=sum(m.passes for m in members),
                status=status,
                **numbers,
            )
        )
    return Scorecard(
        title=title,
        start=start,
        end=end,
        drills=list(scores.values()),
        controls=controls,
        ledger_ok=ledger_ok,
        ledger_summary=summary,
        unverifiable=unverifiable,
    )
