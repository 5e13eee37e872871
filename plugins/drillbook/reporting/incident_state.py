"""Decide what the watchdog posts about one drill, and keep that state in the ledger.

Rules this module enforces:
- one message per incident: an incident is posted when it opens, again only
  after ``defaults.watchdog.renotify``, and once more when it resolves. The
  state lives in the ledger as ``watchdog`` rows (one per drill and watchdog
  run, written only when the state changes or a reminder goes out), written
  before Slack is called; a delivery that failed (a ``NOTIFY_FAILED``
  ``notification`` row of the same run) is treated as never sent, so the next
  run tries again;
- an incident written only to the outbox (no Slack connection) is not
  "posted": the run writes one ``notification`` row (``NOTIFY_NOT_CONFIGURED``,
  derived verdict ERROR) naming every drill and code that nobody was told
  about, the state keeps them as ``undelivered``, and the first run with a
  delivering sender (Slack configured) posts them again at once; while there
  is still no Slack they are repeated only after ``renotify``, like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drillbook.ledger.store import Ledger
    from drillbook.reporting.assessment import Incident
    from drillbook.result import DrillResult
    from drillbook.run.context import RunContext


@dataclass
class DrillPlan:
    """What to do for one drill this hour: which incidents to post, which resolved, the new state."""

    drill: str
    post: list[Incident] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    state: dict[str, dict[str, str]] = field(default_factory=dict)  # code -> {"since", "notified_at"}
    changed: bool = False


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
