"""The watchdog: silence is not success. Notice drills that did not run, never verify, or went stale.

Rules this module enforces (pure functions take ``now``; only ``run_watchdog`` does I/O):
- ``DRILL_MISSED``: the newest result of an enabled drill is older than its
  latest scheduled time that is at least ``defaults.watchdog.grace`` in the
  past (the schedule is read in ``defaults.timezone``, like the DAGs). A drill
  with no result at all is missed: a DAG that was never scheduled must page;
- ``DRILL_NEVER_VERIFIED``: the drill's newest results are all ERROR and that
  unbroken run of ERRORs spans at least the grace (one ERROR pages on its
  own; an ERROR that retries did not cure escalates);
- ``DRILL_STALE``: the newest PASS is older than the drill's ``max_unverified``
  (or, never having passed, its first result is);
- one message per incident: an incident is posted when it opens, again only
  after ``defaults.watchdog.renotify``, and once more when it resolves. The
  state lives in the ledger as ``watchdog`` rows (one per drill and watchdog
  run, written only when the state changes or a reminder goes out), written
  before Slack is called; a delivery that failed (a ``notification`` row of
  the same run) is treated as never sent, so the next run tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from drillbook.catalogue.common import format_duration, previous_run
from drillbook.errors import NotificationFailed
from drillbook.findings import spec

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue
    from drillbook.context import RunContext
    from drillbook.ledger.store import Ledger
    from drillbook.notify.notifier import Notifier
    from drillbook.result import DrillResult

log = logging.getLogger(__name__)

HISTORY_DEPTH = 50  # newest results read per drill: enough to see an ERROR streak, bounded on a busy ledger


@dataclass(frozen=True)
class DrillHistory:
    """What the watchdog needs to know about one drill's past results."""

    newest_at: datetime | None = None
    last_pass_at: datetime | None = None
    first_at: datetime | None = None
    error_streak: tuple[datetime, datetime] | None = None  # (oldest, newest) of the trailing ERRORs


@dataclass(frozen=True)
class Incident:
    code: str
    drill: str
    kind: str
    message: str
    controls: tuple[str, ...] = ()


@dataclass
class DrillPlan:
    """What to do for one drill this hour: which incidents to post, which resolved, the new state."""

    drill: str
    post: list[Incident] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    state: dict[str, dict[str, str]] = field(default_factory=dict)  # code -> {"since", "notified_at"}
    changed: bool = False


def history_from_records(newest_first: Iterable[Any], *, last_pass_at: datetime | None, first_at: datetime | None) -> DrillHistory:
    """Summarise 'drill' records (newest first: anything with ``recorded_at`` and ``verdict``)."""
    newest_at = None
    streak_old = streak_new = None
    for record in newest_first:
        if newest_at is None:
            newest_at = record.recorded_at
        if record.verdict != "ERROR":
            break
        streak_new = streak_new or record.recorded_at
        streak_old = record.recorded_at
    streak = (streak_old, streak_new) if streak_old and streak_new else None
    return DrillHistory(newest_at=newest_at, last_pass_at=last_pass_at, first_at=first_at or newest_at, error_streak=streak)


def due_since(schedule: str, *, now: datetime, grace: float, timezone: str = "UTC") -> datetime:
    """The latest scheduled time whose result should be in the ledger by ``now`` (UTC)."""
    local = (now - timedelta(seconds=grace)).astimezone(ZoneInfo(timezone))
    return previous_run(schedule, local).astimezone(UTC)


def assess_drill(drill: Any, history: DrillHistory, *, now: datetime, grace: float, max_unverified: float,
                 timezone: str = "UTC") -> list[Incident]:
    """The open incidents of one drill at ``now``."""
    found: list[Incident] = []
    controls = tuple(drill.controls)

    def add(code: str, message: str) -> None:
        found.append(Incident(code=code, drill=drill.name, kind=drill.kind, message=message, controls=controls))

    due = due_since(drill.schedule, now=now, grace=grace, timezone=timezone)
    if history.newest_at is None:
        add("DRILL_MISSED", f"drill {drill.name!r} ({drill.kind}, schedule {drill.schedule!r}) has no result in the ledger "
                            f"although a run was due at {due:%Y-%m-%d %H:%M} UTC (grace {format_duration(grace)})")
    elif history.newest_at < due:
        add("DRILL_MISSED", f"drill {drill.name!r} ({drill.kind}, schedule {drill.schedule!r}) was due at {due:%Y-%m-%d %H:%M} UTC; "
                            f"its newest result is from {history.newest_at:%Y-%m-%d %H:%M} UTC ({format_duration((now - history.newest_at).total_seconds())} ago)")
    if history.error_streak is not None:
        oldest, newest = history.error_streak
        if (newest - oldest).total_seconds() >= grace:
            add("DRILL_NEVER_VERIFIED", f"drill {drill.name!r} has produced only ERROR results since {oldest:%Y-%m-%d %H:%M} UTC "
                                        f"({format_duration((now - oldest).total_seconds())}): it has not been able to verify anything")
    if history.last_pass_at is not None:
        age = (now - history.last_pass_at).total_seconds()
        if age > max_unverified:
            add("DRILL_STALE", f"the newest PASS of drill {drill.name!r} is {format_duration(age)} old "
                               f"({history.last_pass_at:%Y-%m-%d %H:%M} UTC), more than max_unverified {format_duration(max_unverified)}")
    elif history.first_at is not None and (now - history.first_at).total_seconds() > max_unverified:
        add("DRILL_STALE", f"drill {drill.name!r} has never passed since its first result on {history.first_at:%Y-%m-%d %H:%M} UTC, "
                           f"longer than max_unverified {format_duration(max_unverified)}")
    return found


def assess(catalogue: Catalogue, histories: Mapping[str, DrillHistory], *, now: datetime) -> dict[str, list[Incident]]:
    """Open incidents of every enabled drill (a drill missing from ``histories`` has no results)."""
    d = catalogue.defaults
    return {
        drill.name: assess_drill(drill, histories.get(drill.name, DrillHistory()), now=now, grace=d.watchdog.grace,
                                 max_unverified=catalogue.max_unverified_of(drill), timezone=d.timezone)
        for drill in catalogue.drills
        if drill.enabled
    }


def plan_drill(drill: str, incidents: list[Incident], previous: Mapping[str, Mapping[str, str]], *, now: datetime,
               renotify: float) -> DrillPlan:
    """Decide what to post: new incidents, reminders after ``renotify``, resolutions; and the state to keep."""
    plan = DrillPlan(drill=drill)
    stamp = now.isoformat()
    for incident in incidents:
        before = previous.get(incident.code)
        if before is None:
            plan.post.append(incident)
            plan.state[incident.code] = {"since": stamp, "notified_at": stamp}
            plan.changed = True
            continue
        notified = before.get("notified_at")
        due = notified is None or (now - datetime.fromisoformat(notified)).total_seconds() >= renotify
        plan.state[incident.code] = {"since": before.get("since", stamp), "notified_at": stamp if due else str(notified)}
        if due:
            plan.post.append(incident)
            plan.changed = True
    plan.resolved = sorted(code for code in previous if code not in plan.state)
    plan.changed = plan.changed or bool(plan.resolved)
    return plan


def state_row(drill: Any, plan: DrillPlan, incidents: list[Incident]) -> DrillResult:
    """The 'watchdog' ledger row of one drill: its open incidents as findings, the state in details."""
    from drillbook.drills.base import ResultBuilder

    builder = ResultBuilder(kind=drill.kind, drill=drill.name, target="watchdog", controls=list(drill.controls))
    builder.checked()  # the drill's history was read and assessed
    for incident in incidents:
        builder.find(incident.code, incident.message, subject=drill.name, detail=dict(plan.state.get(incident.code, {})))
    builder.details["watchdog"] = {"open": plan.state, "resolved": plan.resolved, "posted": [i.code for i in plan.post]}
    return builder.finish()


@dataclass
class WatchdogRun:
    incidents: dict[str, list[Incident]]
    plans: dict[str, DrillPlan]
    posted: int = 0


def read_history(ledger: Ledger, drill: Any) -> DrillHistory:
    recent = ledger.query(drill=drill.name, kind=drill.kind, record_type="drill", newest_first=True, limit=HISTORY_DEPTH)
    last_pass = ledger.last_pass(kind=drill.kind, drill=drill.name)
    first = ledger.query(drill=drill.name, kind=drill.kind, record_type="drill", limit=1)
    return history_from_records(recent, last_pass_at=last_pass.recorded_at if last_pass else None,
                                first_at=first[0].recorded_at if first else None)


def read_state(ledger: Ledger, drill: Any, *, ctx: RunContext) -> dict[str, dict[str, Any]]:
    """The open incidents of the newest earlier watchdog row; a failed delivery of that run counts as not sent."""
    rows = [r for r in ledger.query(drill=drill.name, kind=drill.kind, record_type="watchdog", newest_first=True, limit=5)
            if r.run_id != ctx.run_id]  # a retry of this run re-decides against the state before it
    if not rows:
        return {}
    row = rows[0]
    state = {code: dict(v) for code, v in ((row.result.get("details") or {}).get("watchdog", {}).get("open") or {}).items()}
    failed = [n for n in ledger.query(drill=drill.name, kind=drill.kind, record_type="notification", since=row.recorded_at)
              if n.run_id == row.run_id and n.dag_id == row.dag_id]
    if failed:
        for code in (row.result.get("details") or {}).get("watchdog", {}).get("posted", []):
            if code in state:
                state[code]["notified_at"] = None
    return state


def run_watchdog(catalogue: Catalogue, *, ledger: Ledger, notifier: Notifier, ctx: RunContext,
                 now: datetime | None = None) -> WatchdogRun:
    """Assess every drill, write changed state to the ledger, then post; a failed post is recorded and raised."""
    from drillbook.notify.render import IncidentView

    now = now or datetime.now(UTC)
    drills = [d for d in catalogue.drills if d.enabled]
    histories = {d.name: read_history(ledger, d) for d in drills}
    incidents = assess(catalogue, histories, now=now)
    run = WatchdogRun(incidents=incidents, plans={})
    for drill in drills:
        plan = plan_drill(drill.name, incidents[drill.name], read_state(ledger, drill, ctx=ctx), now=now,
                          renotify=catalogue.defaults.watchdog.renotify)
        run.plans[drill.name] = plan
        if not plan.changed:
            continue
        row = state_row(drill, plan, incidents[drill.name])
        ledger.record_event("watchdog", row, ctx)  # evidence first
        views = [IncidentView(code=i.code, drill=i.drill, kind=i.kind, message=i.message, hint=spec(i.code).hint) for i in plan.post]
        views += [IncidentView(code=c, drill=drill.name, kind=drill.kind, message="", hint="", resolved=True) for c in plan.resolved]
        for view in views:
            try:
                notifier.notify_incident(view)
            except Exception as exc:
                # Stop here: the ledger keys one notification row per attempt, so the drills after this
                # one keep their old state and are decided again by the retry or the next hourly run.
                ledger.record_notify_failure(row, ctx, error=exc)
                raise NotificationFailed(f"watchdog could not post {view.code} for {drill.name!r}: {exc}") from None
            run.posted += 1
    for name, found in incidents.items():
        for incident in found:
            log.warning("watchdog: %s %s: %s", incident.code, name, incident.message)
    return run
