"""Assess each drill at ``now``: silence is not success, so missed, never verified and stale are incidents.

Rules this module enforces (pure functions of the history and ``now``):
- ``DRILL_MISSED``: the newest result of an enabled drill is older than its
  latest scheduled time that is at least ``defaults.watchdog.grace`` in the
  past (the schedule is read in ``defaults.timezone``, like the DAGs). A drill
  with no result at all is missed: a DAG that was never scheduled must page —
  but only once it has had one full schedule interval plus the grace since its
  first appearance (the oldest ledger row naming it, of any type; a watchdog run
  that finds none writes a ``watchdog`` row for it, with no incident and no
  page, and that row is its first appearance). A brand-new deployment or a
  drill just added to the catalogue is not paged before it could have run;
  a drill with ``since`` (in force since) is not missed for a due time before it;
- ``DRILL_NEVER_VERIFIED``: the drill's newest runs are all ERROR and that
  unbroken run of ERRORs spans at least the grace (one ERROR pages on its
  own; an ERROR that retries did not cure escalates);
- ``DRILL_STALE``: the newest passing run is older than the drill's ``max_unverified``
  (or, never having passed, its first result is).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from drillbook.catalogue.common import format_duration, in_force_since, previous_run
from drillbook.reporting.drill_history import DrillHistory

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue


@dataclass(frozen=True)
class Incident:
    code: str
    drill: str
    kind: str
    message: str
    controls: tuple[str, ...] = ()


def due_since(schedule: str, *, now: datetime, grace: float, timezone: str = "UTC") -> datetime:
    """The latest scheduled time whose result should be in the ledger by ``now`` (UTC)."""
    local = (now - timedelta(seconds=grace)).astimezone(ZoneInfo(timezone))
    return previous_run(schedule, local).astimezone(UTC)


def in_first_interval(schedule: str, first_seen: datetime | None, *, now: datetime, grace: float) -> bool:
    """True while a drill first seen at ``first_seen`` (None: now) has not had one full interval plus grace."""
    from drillbook.catalogue.common import schedule_interval_seconds

    if first_seen is None:
        return True
    return (now - first_seen).total_seconds() < schedule_interval_seconds(schedule, now=first_seen) + grace


def assess_drill(
    drill: Any,
    history: DrillHistory,
    *,
    now: datetime,
    grace: float,
    max_unverified: float,
    timezone: str = "UTC",
) -> list[Incident]:
    """The open incidents of one drill at ``now``."""
    found: list[Incident] = []
    controls = tuple(drill.controls)

    def add(code: str, message: str) -> None:
        found.append(
            Incident(code=code, drill=drill.name, kind=drill.kind, message=message, controls=controls)
        )

    due = due_since(drill.schedule, now=now, grace=grace, timezone=timezone)
    since = in_force_since(getattr(drill, "since", None), timezone)
    if since is not None and due < since:
        pass  # no run was due since the drill came into force (and its grace has passed): nothing is missed
    elif history.newest_at is None:
        if not in_first_interval(drill.schedule, history.first_seen, now=now, grace=grace):
            add(
                "DRILL_MISSED",
                f"drill {drill.name!r} ({drill.kind}, schedule {drill.schedule!r}) has no result in the ledger "
                f"although a run was due at {due:%Y-%m-%d %H:%M} UTC (grace {format_duration(grace)}; "
                f"first seen {history.first_seen:%Y-%m-%d %H:%M} UTC)",
            )
    elif history.newest_at < due:
        add(
            "DRILL_MISSED",
            f"drill {drill.name!r} ({drill.kind}, schedule {drill.schedule!r}) was due at {due:%Y-%m-%d %H:%M} UTC; "
            f"its newest result is from {history.newest_at:%Y-%m-%d %H:%M} UTC "
            f"({format_duration((now - history.newest_at).total_seconds())} ago)",
        )
    if history.error_streak is not None:
        oldest, newest = history.error_streak
        if (newest - oldest).total_seconds() >= grace:
            add(
                "DRILL_NEVER_VERIFIED",
                f"drill {drill.name!r} has produced only ERROR results since {oldest:%Y-%m-%d %H:%M} UTC "
                f"({format_duration((now - oldest).total_seconds())}): it has not been able to verify anything",
            )
    if history.last_pass_at is not None:
        age = (now - history.last_pass_at).total_seconds()
        if age > max_unverified:
            add(
                "DRILL_STALE",
                f"the newest PASS of drill {drill.name!r} is {format_duration(age)} old "
                f"({history.last_pass_at:%Y-%m-%d %H:%M} UTC), more than max_unverified {format_duration(max_unverified)}",
            )
    elif history.first_at is not None and (now - history.first_at).total_seconds() > max_unverified:
        add(
            "DRILL_STALE",
            f"drill {drill.name!r} has had no run in which every check passed within max_unverified "
            f"{format_duration(max_unverified)} (its first result is from {history.first_at:%Y-%m-%d %H:%M} UTC)",
        )
    return found


def assess(
    catalogue: Catalogue, histories: Mapping[str, DrillHistory], *, now: datetime
) -> dict[str, list[Incident]]:
    """Open incidents of every enabled drill (a drill missing from ``histories`` has no results)."""
    d = catalogue.defaults
    return {
        drill.name: assess_drill(
            drill,
            histories.get(drill.name, DrillHistory()),
            now=now,
            grace=d.watchdog.grace,
            max_unverified=catalogue.max_unverified_of(drill),
            timezone=d.timezone,
        )
        for drill in catalogue.drills
        if drill.enabled
    }
