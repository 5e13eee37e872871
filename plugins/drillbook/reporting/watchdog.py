"""The watchdog: silence is not success. Notice drills that did not run, never verify, or went stale.

Rules this module enforces (pure functions take ``now``; only ``run_watchdog`` does I/O):
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
- a drill is judged per RUN, never per row: a mapped drill (alert_path,
  certificates) writes one 'drill' row per path/item under one drill name, so
  rows are grouped by (dag_id, run_id) and a run's verdict is the worst of its
  rows (ERROR > FAIL > SKIPPED > PASS, as in ``drillbook.reporting.digest``): a run is PASS
  only if all its rows passed, so a dead path beside a healthy one still escalates;
- ``DRILL_NEVER_VERIFIED``: the drill's newest runs are all ERROR and that
  unbroken run of ERRORs spans at least the grace (one ERROR pages on its
  own; an ERROR that retries did not cure escalates);
- ``DRILL_STALE``: the newest passing run is older than the drill's ``max_unverified``
  (or, never having passed, its first result is);
- one message per incident: an incident is posted when it opens, again only
  after ``defaults.watchdog.renotify``, and once more when it resolves. The
  state lives in the ledger as ``watchdog`` rows (one per drill and watchdog
  run, written only when the state changes or a reminder goes out), written
  before Slack is called; a delivery that failed (a ``NOTIFY_FAILED``
  ``notification`` row of the same run) is treated as never sent, so the next
  run tries again;
- first of all, records this worker kept in the evidence spool while the
  ledger was down are replayed (``Ledger.flush_spool``), so the assessment
  sees them: drills run daily or weekly, the watchdog hourly;
- then every drill report and digest that never reached Slack is re-sent,
  each at most once (``drillbook.notify.redeliver``); a failed re-send is
  recorded and does not stop the assessment;
- an incident written only to the outbox (no Slack connection) is not
  "posted": the run writes one ``notification`` row (``NOTIFY_NOT_CONFIGURED``,
  derived verdict ERROR) naming every drill and code that nobody was told
  about, the state keeps them as ``undelivered``, and the first run with a
  delivering sender (Slack configured) posts them again at once; while there
  is still no Slack they are repeated only after ``renotify``, like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from drillbook.catalogue.common import format_duration, in_force_since, previous_run
from drillbook.errors import NotificationFailed
from drillbook.findings import spec

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue
    from drillbook.ledger.store import Ledger
    from drillbook.notify.notifier import Notifier
    from drillbook.result import DrillResult
    from drillbook.run.context import RunContext

log = logging.getLogger(__name__)

HISTORY_DEPTH = (
    200  # newest rows read per drill: enough runs to see an ERROR streak, bounded on a busy ledger
)
PASS_WINDOW_MARGIN = timedelta(
    days=1
)  # read a little before max_unverified so a run at the edge is read whole
_VERDICT_RANK = {
    "PASS": 0,
    "SKIPPED": 1,
    "FAIL": 2,
    "ERROR": 3,
}  # as drillbook.reporting.digest: the worst row is the run's verdict


@dataclass(frozen=True)
class DrillHistory:
    """What the watchdog needs to know about one drill's past results."""

    newest_at: datetime | None = None
    last_pass_at: datetime | None = None
    first_at: datetime | None = None
    error_streak: tuple[datetime, datetime] | None = None  # (oldest, newest) of the trailing ERRORs
    first_seen: datetime | None = None  # oldest ledger row naming the drill, of any type (None: never seen)


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
        worst = max(seen.verdict, record.verdict, key=lambda v: _VERDICT_RANK.get(v, 3))
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


def plan_drill(
    drill: str,
    incidents: list[Incident],
    previous: Mapping[str, Mapping[str, Any]],
    *,
    now: datetime,
    renotify: float,
    delivers: bool = True,
) -> DrillPlan:
    """Decide what to post: new incidents, reminders after ``renotify``, resolutions; and the state to keep.

    ``delivers``: the sender reaches people (Slack), so an incident that earlier
    went only to the outbox (``undelivered`` in the state) is posted now.
    """
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
        undelivered = bool(before.get("undelivered"))
        due = (
            notified is None
            or (now - datetime.fromisoformat(notified)).total_seconds() >= renotify
            or (delivers and undelivered)
        )
        plan.state[incident.code] = {
            "since": before.get("since", stamp),
            "notified_at": stamp if due else str(notified),
        }
        if undelivered and not due:
            plan.state[incident.code]["undelivered"] = "true"  # still owed to on-call once Slack is there
        if due:
            plan.post.append(incident)
            plan.changed = True
    plan.resolved = sorted(code for code in previous if code not in plan.state)
    plan.changed = plan.changed or bool(plan.resolved)
    return plan


def state_row(drill: Any, plan: DrillPlan, incidents: list[Incident]) -> DrillResult:
    """The 'watchdog' ledger row of one drill: its open incidents as findings, the state in details."""
    from drillbook.drills.base import ResultBuilder

    builder = ResultBuilder(
        kind=drill.kind, drill=drill.name, target="watchdog", controls=list(drill.controls)
    )
    builder.checked()  # the drill's history was read and assessed
    for incident in incidents:
        builder.find(
            incident.code,
            incident.message,
            subject=drill.name,
            detail=dict(plan.state.get(incident.code, {})),
        )
    builder.details["watchdog"] = {
        "open": plan.state,
        "resolved": plan.resolved,
        "posted": [i.code for i in plan.post],
    }
    return builder.finish()


@dataclass
class WatchdogRun:
    incidents: dict[str, list[Incident]]
    plans: dict[str, DrillPlan]
    posted: int = 0  # messages delivered to people (outbox-only messages are not counted)
    undelivered: dict[str, list[str]] = field(
        default_factory=dict
    )  # drill -> codes written to the outbox only
    redelivery: Any = (
        None  # drillbook.notify.redeliver.RedeliveryRun: drill reports and digests re-sent this run
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


def read_state(ledger: Ledger, drill: Any, *, ctx: RunContext) -> dict[str, dict[str, Any]]:
    """The open incidents of the newest earlier watchdog row, with what its run failed to deliver.

    A ``NOTIFY_FAILED`` row of that run for this drill: its posted codes count as
    not sent (``notified_at`` None, retried at once). A ``NOTIFY_NOT_CONFIGURED``
    row of that run naming this drill: its codes are ``undelivered`` (re-sent as
    soon as Slack delivers).
    """
    rows = [
        r
        for r in ledger.query(
            drill=drill.name, kind=drill.kind, record_type="watchdog", newest_first=True, limit=5
        )
        if r.run_id != ctx.run_id
    ]  # a retry of this run re-decides against the state before it
    if not rows:
        return {}
    row = rows[0]
    watch = (row.result.get("details") or {}).get("watchdog", {})
    state = {code: dict(v) for code, v in (watch.get("open") or {}).items()}
    notes = [
        n
        for n in ledger.query(record_type="notification", since=row.recorded_at)
        if n.run_id == row.run_id
        and n.dag_id == row.dag_id
        and "redelivery" not in (n.result.get("details") or {})
    ]  # a drill report re-sent by that run is not an incident
    if any(n.drill == drill.name and n.kind == drill.kind and "NOTIFY_FAILED" in n.codes for n in notes):
        for code in watch.get("posted", []):
            if code in state:
                state[code]["notified_at"] = None
    for note in notes:
        owed = ((note.result.get("details") or {}).get("undelivered") or {}).get(drill.name) or []
        for code in owed:
            if code in state:
                state[code]["undelivered"] = "true"
    return state


def undelivered_row(undelivered: dict[str, list[str]], *, where: str, transport: str) -> DrillResult:
    """The one ``notification`` row of a watchdog run whose incidents went to the outbox only (verdict derived)."""
    from drillbook.drills.base import ResultBuilder

    builder = ResultBuilder(kind="watchdog", drill="watchdog", target=transport)
    # no builder.checked(): nobody was confirmed told, so the row is ERROR, never a green PASS
    for name, codes in sorted(undelivered.items()):
        builder.find(
            "NOTIFY_NOT_CONFIGURED",
            f"watchdog incidents {', '.join(codes)} of drill {name!r} were written to {where}; "
            "nobody was told (they are sent again once Slack is configured)",
            subject=name,
            detail={"transport": transport, "codes": ", ".join(codes)},
        )
    builder.details["undelivered"] = {name: list(codes) for name, codes in sorted(undelivered.items())}
    builder.details["notification"] = {"delivered": False, "transport": transport}
    return builder.finish(nothing_checked=False)  # ERROR; the finding is the reason


def run_watchdog(
    catalogue: Catalogue,
    *,
    ledger: Ledger,
    notifier: Notifier,
    ctx: RunContext,
    now: datetime | None = None,
    seen_since: Mapping[str, datetime] | None = None,
) -> WatchdogRun:
    """Re-send owed reports, assess every drill, write changed state to the ledger, then post; a failed post is recorded and raised.

    ``seen_since``: first appearances known from outside the ledger (drill name -> time);
    the older of that and the ledger's oldest row counts.
    """
    from drillbook.notify.redeliver import redeliver
    from drillbook.notify.render import IncidentView
    from drillbook.run.pipeline import replay_spool

    now = now or datetime.now(UTC)
    replay_spool(ledger, before="watchdog")
    redelivered = redeliver(
        ledger, notifier, ctx=ctx, now=now
    )  # records its own failures; Slack down shows below too
    drills = [d for d in catalogue.drills if d.enabled]
    histories = {
        d.name: read_history(ledger, d, now=now, max_unverified=catalogue.max_unverified_of(d))
        for d in drills
    }
    for name, seen in (seen_since or {}).items():
        if name in histories:
            first = histories[name].first_seen
            histories[name] = replace(histories[name], first_seen=min(first, seen) if first else seen)
    incidents = assess(catalogue, histories, now=now)
    run = WatchdogRun(incidents=incidents, plans={}, redelivery=redelivered)
    delivers = getattr(notifier.sender, "transport", "slack") != "outbox"
    undelivered: dict[str, list[str]] = {}
    for drill in drills:
        plan = plan_drill(
            drill.name,
            incidents[drill.name],
            read_state(ledger, drill, ctx=ctx),
            now=now,
            renotify=catalogue.defaults.watchdog.renotify,
            delivers=delivers,
        )
        run.plans[drill.name] = plan
        if histories[drill.name].first_seen is None:
            plan.changed = (
                True  # its first appearance: one watchdog row, from which its first interval counts
            )
        if not plan.changed:
            continue
        row = state_row(drill, plan, incidents[drill.name])
        ledger.record_event("watchdog", row, ctx)  # evidence first
        views = [
            IncidentView(code=i.code, drill=i.drill, kind=i.kind, message=i.message, hint=spec(i.code).hint)
            for i in plan.post
        ]
        views += [
            IncidentView(code=c, drill=drill.name, kind=drill.kind, message="", hint="", resolved=True)
            for c in plan.resolved
        ]
        for view in views:
            try:
                delivery = notifier.notify_incident(view)
            except Exception as exc:
                # Stop here: the ledger keys one notification row per attempt, so the drills after this
                # one keep their old state and are decided again by the retry or the next hourly run.
                ledger.record_notify_failure(row, ctx, error=exc)
                raise NotificationFailed(
                    f"watchdog could not post {view.code} for {drill.name!r}: {exc}"
                ) from None
            if not delivery.delivered:
                if not view.resolved:  # a RESOLVED note is not owed later: the incident is gone
                    undelivered.setdefault(drill.name, []).append(view.code)
                continue
            run.posted += 1
    if undelivered:
        run.undelivered = undelivered
        ledger.record_event(
            "notification",
            undelivered_row(
                undelivered,
                where=str(getattr(notifier.sender, "path", "the outbox")),
                transport=getattr(notifier.sender, "transport", "outbox"),
            ),
            ctx,
        )
    for name, found in incidents.items():
        for incident in found:
            log.warning("watchdog: %s %s: %s", incident.code, name, incident.message)
    return run
