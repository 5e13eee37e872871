"""The watchdog: silence is not success. Notice drills that did not run, never verify, or went stale.

Rules this module enforces (only ``run_watchdog`` does I/O; the drill's history is read per run
by ``drillbook.reporting.drill_history``, judged by ``drillbook.reporting.assessment``, and what is
posted and kept is decided by ``drillbook.reporting.incident_state``):
- first of all, records this worker kept in the evidence spool while the
  ledger was down are replayed (``Ledger.flush_spool``), so the assessment
  sees them: drills run daily or weekly, the watchdog hourly;
- then every drill report and digest that never reached Slack is re-sent,
  each at most once (``drillbook.notify.redeliver``); a failed re-send is
  recorded and does not stop the assessment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from drillbook.errors import NotificationFailed
from drillbook.findings import spec
from drillbook.reporting.assessment import Incident, assess
from drillbook.reporting.drill_history import read_history
from drillbook.reporting.incident_state import (
    DrillPlan,
    plan_drill,
    read_state,
    state_row,
    undelivered_row,
)

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue
    from drillbook.ledger.store import Ledger
    from drillbook.notify.notifier import Notifier
    from drillbook.run.context import RunContext

log = logging.getLogger(__name__)


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
