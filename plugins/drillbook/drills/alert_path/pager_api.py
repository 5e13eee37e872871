"""Confirm a PagerDuty incident or an Opsgenie alert through their REST APIs, not the events endpoint's 202.

Rules this module enforces:
- the events endpoints answer 202 before anything exists (both process events
  asynchronously), so a canary counts as delivered only when the REST API shows
  it: PagerDuty ``GET /incidents?incident_key=<dedup key>`` with the incident on
  the catalogue's ``escalation_policy`` with urgency ``high`` (a low-urgency
  incident follows rules that page nobody: ``ALERT_LOW_URGENCY``, as is an
  Opsgenie alert an alert policy lowered to P5, informational); Opsgenie ``GET /v2/alerts/requests/
  <requestId>`` succeeded and ``GET /v2/alerts/<alias>?identifierType=alias``
  shows the alert open, neither snoozed nor acknowledged, with the catalogue's
  ``team`` among its teams/responders. Otherwise ``ALERT_UNROUTED`` (the policy or
  teams it went to), ``ALERT_SUPPRESSED`` (a PagerDuty maintenance window on the
  service, an Opsgenie snooze/acknowledgement) or ``ALERT_NOT_DELIVERED``;
- a 429 is waited out (``Retry-After``, never past ``give_up``); an API that
  never answers 2xx is ``ALERT_READBACK_FAILED`` (could not verify);
- latency is send → the first read that showed the incident/alert;
- every answer is read within a byte and time budget (``bounded``); a cut or
  unparsable answer is not an answer (``ALERT_READBACK_FAILED`` if none ever is).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from drillbook.drills.alert_path.alertmanager_api import short
from drillbook.drills.alert_path.canary import Canary
from drillbook.drills.alert_path.catalogue import WebhookPath
from drillbook.drills.alert_path.delivery import Delivery, judge
from drillbook.drills.base import ResultBuilder
from drillbook.errors import ConfigurationError, DrillAborted
from drillbook.resources.connections import Connection
from drillbook.safety.redact import register_secret

API_BASE = {"pagerduty": "https://api.pagerduty.com", "opsgenie": "https://api.opsgenie.com"}
MAX_RETRY_AFTER = 30.0


@dataclass(frozen=True)
class ApiTarget:
    base: str
    headers: dict[str, str] = field(repr=False)


def api_target(conn: Connection, *, flavour: str) -> ApiTarget:
    """The REST API of PagerDuty (``Token token=``) or Opsgenie (``GenieKey``), HttpHook rules for the base URL."""
    host = conn.host or API_BASE[flavour]
    base = host if "://" in host else f"{conn.schema or 'http'}://{host}"
    if conn.port:
        base = f"{base}:{conn.port}"
    key = conn.password or (conn.extra or {}).get("token") or (conn.extra or {}).get("api_key")
    if not key:
        raise ConfigurationError(
            f"{flavour} API connection {conn.conn_id!r} has no API key (password or extra 'token')"
        )
    register_secret(key)
    if flavour == "pagerduty":
        headers = {
            "Authorization": f"Token token={key}",
            "Accept": "application/vnd.pagerduty+json;version=2",
        }
    else:
        headers = {"Authorization": f"GenieKey {key}"}
    register_secret(headers["Authorization"])
    return ApiTarget(base=base.rstrip("/"), headers=headers)


class _Reader:
    """Polls one REST resource; remembers whether it ever answered and waits out 429s."""

    def __init__(self, http: Any, api: ApiTarget, delivery: Delivery) -> None:
        self.http, self.api, self.delivery = http, api, delivery
        self.answered, self.last, self.rate_limited = False, "not read", 0

    def get(self, path: str, params: dict[str, Any] | None = None) -> tuple[int | None, Any]:
        import httpx

        try:
            from drillbook.drills.alert_path.bounded import request

            response = request(
                self.http, "GET", self.api.base + path, headers=self.api.headers, params=params
            )
        except httpx.TransportError as exc:
            self.last = type(exc).__name__
            return None, None
        self.last = f"HTTP {response.status_code}"
        if response.status_code == 429:
            self.rate_limited += 1
            try:
                wait = float(response.headers.get("Retry-After", "1"))
            except ValueError:
                wait = 1.0
            time.sleep(max(0.0, min(wait, MAX_RETRY_AFTER, self.delivery.remaining())))
            return 429, None
        body = response.json() if 200 <= response.status_code < 300 else None
        # an answer counts only when it was read whole and parsed: a cut or broken page shows nothing either way
        self.answered = self.answered or body is not None or response.status_code == 404
        if response.cut:
            self.last += f" ({response.cut})"
        return response.status_code, body


def _not_seen(
    builder: ResultBuilder,
    reader: _Reader,
    *,
    path: WebhookPath,
    delivery: Delivery,
    what: str,
    reason: str = "",
) -> None:
    if not reader.answered:
        builder.find(
            "ALERT_READBACK_FAILED",
            f"the {path.flavour} REST API {reader.api.base} never answered (last: {reader.last}); the {what} could not be confirmed",
            subject=path.name,
            detail={"api": reader.api.base, "last": reader.last, "polls": delivery.polls},
        )
        raise DrillAborted("confirm")
    judge(
        builder,
        delivery,
        not_seen_reason=reason or f"no {what} in the {path.flavour} REST API",
        not_seen_detail={"api": reader.api.base},
    )


def confirm_pagerduty(
    builder: ResultBuilder,
    http: Any,
    *,
    path: WebhookPath,
    api: ApiTarget,
    canary: Canary,
    delivery: Delivery,
    interval: float,
) -> None:
    """Poll ``GET /incidents?incident_key=`` until the canary's incident exists; check its escalation policy."""
    reader = _Reader(http, api, delivery)
    found: dict[str, Any] = {}

    def look(_remaining: float) -> bool:
        _, body = reader.get("/incidents", {"incident_key": canary.nonce, "date_range": "all"})
        incidents = body.get("incidents") if isinstance(body, dict) else None
        for incident in incidents if isinstance(incidents, list) else []:
            if isinstance(incident, dict) and incident.get("incident_key") == canary.nonce:
                found.update(incident)
                return True
        return False

    with builder.phase("confirm incident") as ph:
        delivery.seen_via = f"PagerDuty REST API {api.base}/incidents"
        delivery.poll(look, interval=interval)
        delivery.extra["api_rate_limited"] = reader.rate_limited
        if not found:
            ph.status, ph.detail = "failed", f"no incident ({reader.last})"
            window = _maintenance(reader, path) if path.service and reader.answered else None
            if window:
                builder.checked()
                builder.find(
                    "ALERT_SUPPRESSED",
                    f"PagerDuty created no incident for the canary on path {path.name!r}: service {path.service!r} is in maintenance window {window}",
                    subject=path.name,
                    detail={"service": path.service, "maintenance_window": window},
                )
                raise DrillAborted("confirm")
            _not_seen(builder, reader, path=path, delivery=delivery, what="incident")
            return
        policy: dict[str, Any] = (
            found["escalation_policy"] if isinstance(found.get("escalation_policy"), dict) else {}
        )
        delivery.extra["incident"] = {
            "id": short(found.get("id"), 64),
            "status": short(found.get("status"), 32),
            "escalation_policy": short(policy.get("id"), 64),
            "urgency": short(found.get("urgency"), 16),
        }
        if policy.get("id") != path.escalation_policy:
            builder.checked()
            builder.find(
                "ALERT_UNROUTED",
                f"PagerDuty incident {short(found.get('id'), 64)} for the canary is on escalation policy "
                f"{short(policy.get('id'), 64)!r} ({short(policy.get('summary'), 80)}), not {path.escalation_policy!r}",
                subject=path.name,
                detail={
                    "escalation_policy": short(policy.get("id"), 64),
                    "expected_escalation_policy": path.escalation_policy,
                },
            )
            ph.status, ph.detail = "failed", f"escalation policy {policy.get('id')!r}"
            raise DrillAborted("confirm")
        if found.get("urgency") != "high":
            # low urgency follows the low-urgency notification rules (often e-mail or nothing): nobody is paged
            builder.checked()
            builder.find(
                "ALERT_LOW_URGENCY",
                f"PagerDuty incident {short(found.get('id'), 64)} for the canary (severity {canary.severity!r}) is on escalation "
                f"policy {path.escalation_policy!r} but has urgency {short(found.get('urgency'), 16)!r}; only high urgency pages on-call",
                subject=path.name,
                detail={
                    "urgency": short(found.get("urgency"), 16),
                    "severity": canary.severity,
                    "escalation_policy": path.escalation_policy,
                },
            )
            ph.status, ph.detail = "failed", f"urgency {found.get('urgency')!r}"
            raise DrillAborted("confirm")
        ph.detail = f"incident {found.get('id')} on {policy.get('id')} after {delivery.latency_seconds}s"
    judge(builder, delivery)


def _maintenance(reader: _Reader, path: WebhookPath) -> str | None:
    _, body = reader.get("/maintenance_windows", {"service_ids[]": path.service, "filter": "ongoing"})
    windows = body.get("maintenance_windows") if isinstance(body, dict) else None
    for window in windows if isinstance(windows, list) else []:
        if isinstance(window, dict):
            return f"{short(window.get('id'), 64)} ({short(window.get('description'), 80)})"
    return None


def confirm_opsgenie(
    builder: ResultBuilder,
    http: Any,
    *,
    path: WebhookPath,
    api: ApiTarget,
    canary: Canary,
    delivery: Delivery,
    interval: float,
    request_id: str | None,
) -> None:
    """Poll the create request's status, then the alert by alias; check snooze/ack and the team."""
    reader = _Reader(http, api, delivery)
    state: dict[str, Any] = {"request": None, "alert": None}

    def look(_remaining: float) -> bool:
        if request_id and state["request"] is None:
            _, body = reader.get(f"/v2/alerts/requests/{quote(request_id, safe='')}")
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, dict):
                return False  # 404 until Opsgenie has processed the request
            state["request"] = data
            if not data.get("isSuccess", data.get("success")):
                return False
        if state["request"] is not None and not state["request"].get(
            "isSuccess", state["request"].get("success")
        ):
            return False
        _, body = reader.get(f"/v2/alerts/{quote(canary.nonce, safe='')}", {"identifierType": "alias"})
        data = body.get("data") if isinstance(body, dict) else None
        if isinstance(data, dict) and data.get("alias") == canary.nonce:
            state["alert"] = data
            return True
        return False

    with builder.phase("confirm alert") as ph:
        delivery.seen_via = f"Opsgenie REST API {api.base}/v2/alerts"
        delivery.poll(look, interval=interval)
        delivery.extra["api_rate_limited"] = reader.rate_limited
        request = state["request"] or {}
        delivery.extra["opsgenie_request"] = {
            "status": short(request.get("status"), 120),
            "success": request.get("isSuccess", request.get("success")),
        }
        alert = state["alert"]
        if alert is None:
            ph.status, ph.detail = "failed", f"no alert ({reader.last})"
            reason = f"Opsgenie request {request_id}: {short(request.get('status'))}" if request else ""
            _not_seen(builder, reader, path=path, delivery=delivery, what="alert", reason=reason)
            return
        team_responders = [
            r for r in alert.get("responders") or [] if isinstance(r, dict) and r.get("type") == "team"
        ]
        teams = sorted(
            {
                str(t.get(k))
                for t in (alert.get("teams") or []) + team_responders
                if isinstance(t, dict)
                for k in ("id", "name")
                if t.get(k)
            }
        )
        delivery.extra["alert"] = {
            "id": short(alert.get("id"), 64),
            "status": short(alert.get("status"), 32),
            "teams": teams,
            "priority": short(alert.get("priority"), 8),
        }
        if alert.get("snoozed") or alert.get("acknowledged") or alert.get("status") != "open":
            how = (
                "snoozed"
                if alert.get("snoozed")
                else "acknowledged"
                if alert.get("acknowledged")
                else f"status {alert.get('status')!r}"
            )
            builder.checked()
            builder.find(
                "ALERT_SUPPRESSED",
                f"Opsgenie alert {short(alert.get('id'), 64)} for the canary on path {path.name!r} is {how}: nobody is paged",
                subject=path.name,
                detail={
                    "snoozed": bool(alert.get("snoozed")),
                    "acknowledged": bool(alert.get("acknowledged")),
                    "status": short(alert.get("status"), 32),
                },
            )
            ph.status, ph.detail = "failed", how
            raise DrillAborted("confirm")
        if path.team not in teams:
            builder.checked()
            builder.find(
                "ALERT_UNROUTED",
                f"Opsgenie alert {short(alert.get('id'), 64)} for the canary went to teams {teams or 'none'}, not {path.team!r}",
                subject=path.name,
                detail={"teams": ", ".join(teams), "expected_team": path.team},
            )
            ph.status, ph.detail = "failed", f"teams {teams}"
            raise DrillAborted("confirm")
        if alert.get("priority") == "P5":
            # P5 is informational: an alert policy lowered the canary below anything that notifies
            builder.checked()
            builder.find(
                "ALERT_LOW_URGENCY",
                f"Opsgenie alert {short(alert.get('id'), 64)} for the canary is open for {path.team!r} but has priority "
                f"'P5' (informational; sent as {canary.labels.get('priority', 'P3')!r}): nobody is notified",
                subject=path.name,
                detail={
                    "priority": "P5",
                    "sent_priority": canary.labels.get("priority", "P3"),
                    "team": path.team,
                },
            )
            ph.status, ph.detail = "failed", "priority P5"
            raise DrillAborted("confirm")
        ph.detail = f"alert {alert.get('id')} open for {path.team} after {delivery.latency_seconds}s"
    judge(builder, delivery)
