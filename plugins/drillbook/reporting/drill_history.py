"""A drill's past results as the watchdog reads them: grouped per run, newest first.

Rule this module enforces: a drill is judged per RUN, never per row: a mapped
drill (alert_path, certificates) writes one 'drill' row per path/item under one
drill name, so rows are grouped by (dag_id, run_id) and a run's verdict is the
worst of its rows (ERROR > FAIL > SKIPPED > PASS, as in ``drillbook.reporting.aggregate``):
a run is PASS only if all its rows passed, so a dead path beside a healthy one
still escalates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from drillbook import verdict_order

if TYPE_CHECKING:
    from drillbook.ledger.store import Ledger

HISTORY_DEPTH = (
    200  # newest rows read per drill: enough runs to see an ERROR streak, bounded on a busy ledger
)
PASS_WINDOW_MARGIN = timedelta(
    days=1
)  # read a little before max_unverified so a run at the edge is read whole


@dataclass(frozen=True)
class DrillHistory:
    """What the watchdog needs to know about one drill's past results."""

    newest_at: datetime | None = None
    last_pass_at: datetime | None = None
    first_at: datetime | None = None
    error_streak: tuple[datetime, datetime] | None = None  # (oldest, newest) of the trailing ERRORs
    first_seen: datetime | None = None  # oldest ledger row naming the drill, of any type (None: never seen)


@dataclass(frozen=True)
class RunSummary:
    """One run of a drill: its (dag_id, run_id), newest row time and worst verdict."""

    key: tuple[Any, Any]
    at: datetime
    verdict: str


def runs_of(records: Iterable[Any]) -> list[RunSummary]:
    """Group 'drill' rows by (dag_id, run_id), newest run first; a run's verdict is its worst row's."""
    runs: dict[tuple[Any, Any], RunSummary] = {}
    for record in records:
        key = (getattr(record, "dag_id", None), getattr(record, "run_id", None))
        seen = runs.get(key)
        if seen is None:
            runs[key] = RunSummary(key=key, at=record.recorded_at, verdict=record.verdict)
            continue
        worst = max(
            seen.verdict, record.verdict, key=verdict_order.rank
        )  # the worst row is the run's verdict
        runs[key] = RunSummary(key=key, at=max(seen.at, record.recorded_at), verdict=worst)
    return sorted(runs.values(), key=lambda r: r.at, reverse=True)


def newest_passing_run(records: Iterable[Any]) -> datetime | None:
    """The time of the newest run whose every row passed, or None."""
    return next((run.at for run in runs_of(records) if run.verdict == "PASS"), None)


def history_from_records(
    newest_first: Iterable[Any], *, last_pass_at: datetime | None, first_at: datetime | None
) -> DrillHistory:
    """Summarise 'drill' records (anything with ``recorded_at``, ``verdict``, ``dag_id``, ``run_id``) per run.

    ``last_pass_at`` is the newest passing RUN known from outside ``newest_first``
    (see ``read_history``); a passing run among the records wins when newer.
    """
    runs = runs_of(newest_first)
    newest_at = runs[0].at if runs else None
    streak_old = streak_new = None
    for run in runs:
        if run.verdict != "ERROR":
            break
        streak_new = streak_new or run.at
        streak_old = run.at
    streak = (streak_old, streak_new) if streak_old and streak_new else None
    passed = next((run.at for run in runs if run.verdict == "PASS"), None)
    if passed is None or (last_pass_at is not None and last_pass_at > passed):
        passed = last_pass_at
    return DrillHistory(
        newest_at=newest_at, last_pass_at=passed, first_at=first_at or newest_at, error_streak=streak
    )


def read_history(ledger: Ledger, drill: Any, *, now: datetime, max_unverified: float) -> DrillHistory:
    """The drill's history, judged per run (see the module docstring).

    The newest passing run is searched among the rows of the last
    ``max_unverified`` (plus a margin), streamed and grouped by run: the ledger's
    ``last_pass`` is a PASS *row*, which a mapped drill writes for its healthy
    path even when another path of the same run failed. When no run in that
    window passed, a PASS row older than the window is taken as the newest pass
    (stale either way); a PASS row inside the window belongs to a run that did
    not pass, so it counts for nothing.
    """
    from drillbook.ledger.query import Filter

    recent = ledger.query(
        drill=drill.name, kind=drill.kind, record_type="drill", newest_first=True, limit=HISTORY_DEPTH
    )
    window_start = now - timedelta(seconds=max_unverified) - PASS_WINDOW_MARGIN
    in_window = ledger.iter_records(
        Filter.build(since=window_start, drill=drill.name, kind=drill.kind, record_type="drill")
    )
    last_pass_at = newest_passing_run(in_window)
    if last_pass_at is None:
        last_row = ledger.last_pass(kind=drill.kind, drill=drill.name)
        last_pass_at = (
            last_row.recorded_at if last_row is not None and last_row.recorded_at < window_start else None
        )
    first = ledger.query(drill=drill.name, kind=drill.kind, record_type="drill", limit=1)
    history = history_from_records(
        recent, last_pass_at=last_pass_at, first_at=first[0].recorded_at if first else None
    )
    seen = ledger.query(drill=drill.name, kind=drill.kind, limit=1)
    return replace(history, first_seen=seen[0].recorded_at if seen else None)
