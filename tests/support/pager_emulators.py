"""PagerDuty and Opsgenie emulators on 127.0.0.1, with the real APIs' asynchronous semantics.

What they model (from the public API references; no web access was used):

PagerDuty
- ``POST /v2/enqueue`` (Events API v2): ``routing_key`` must be known (400
  "invalid event" otherwise), ``trigger`` needs ``payload.summary/source/
  severity``; answers 202 ``{"status": "success", "dedup_key": ...}`` at once and
  processes the event ``delay`` seconds later: a trigger with the dedup key of an
  open incident is merged into it, ``resolve`` resolves it. A service in a
  maintenance window creates nothing.
- REST API (``Authorization: Token token=<key>``): ``GET /incidents?incident_key=``
  lists the incident with its ``escalation_policy`` reference;
  ``GET /maintenance_windows?service_ids[]=&filter=ongoing``.

Opsgenie
- ``POST /v2/alerts`` (``Authorization: GenieKey <key>``): 202 ``{"result":
  "Request will be processed", "requestId": ...}``; processed ``delay`` seconds
  later. Until then ``GET /v2/alerts/requests/{requestId}`` is 404; afterwards it
  shows ``isSuccess``/``status``/``alertId``. An open alert with the same alias is
  de-duplicated. ``GET /v2/alerts/{alias}?identifierType=alias`` shows the alert
  with the integration's team in ``teams`` and ``responders``;
  ``POST /v2/alerts/{alias}/close?identifierType=alias`` closes it (async too).

Both: ``rate_limited`` answers that many requests 429 with ``Retry-After``;
``answer_delay`` holds the answer to a create/trigger (after recording it) so
a client times out although the event landed.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback import LoopbackServer


@dataclass
class Knobs:
    delay: float = 0.3  # seconds between accepting an event and it taking effect
    answer_delay: float = 0.0  # hold the events/create answer this long (the event still lands)
    rate_limited: int = 0  # the next N requests (any endpoint) answer 429
    rate_limited_reads: int = 0  # the next N GETs (REST API reads) answer 429
    retry_after: str = "1"
    drop: bool = False  # accept events but never create anything
    fail_resolves: int = 0  # the next N resolve/close requests answer 500


class _Emulator(LoopbackServer):
    """Shared plumbing: a threaded loopback server, a lock, a queue of events that take effect later."""

    def __init__(self) -> None:
        self.knobs = Knobs()
        self.lock = threading.Lock()
        self.pending: list[tuple[float, dict[str, Any]]] = []
        self.received: list[dict[str, Any]] = []
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting

            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    return self.reply(400, {"message": "body is not JSON"})
                with emulator.lock:
                    if emulator.knobs.rate_limited > 0 or (
                        method == "GET" and emulator.knobs.rate_limited_reads > 0
                    ):
                        if method == "GET" and emulator.knobs.rate_limited_reads > 0:
                            emulator.knobs.rate_limited_reads -= 1
                        else:
                            emulator.knobs.rate_limited -= 1
                        return self.reply(
                            429, {"message": "rate limited"}, {"Retry-After": emulator.knobs.retry_after}
                        )
                    emulator._process()
                emulator.route(self, method, parts.path, parse_qs(parts.query), body)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self.serve(Handler)

    def later(self, event: dict[str, Any]) -> None:
        self.pending.append((time.monotonic() + self.knobs.delay, event))

    def _process(self) -> None:
        """Apply every queued event whose time has come, in order (caller holds the lock)."""
        now = time.monotonic()
        due = [e for t, e in self.pending if t <= now]
        self.pending = [(t, e) for t, e in self.pending if t > now]
        for event in due:
            self.apply(event)

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until every queued event has taken effect (for assertions)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                self._process()
                if not self.pending:
                    return
            time.sleep(0.05)

    def hold_answer(self) -> None:
        if self.knobs.answer_delay:
            time.sleep(self.knobs.answer_delay)

    def route(
        self, h: Any, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> None:  # pragma: no cover
        raise NotImplementedError

    def apply(self, event: dict[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError


@dataclass
class PdService:
    id: str
    escalation_policy: str
    policy_name: str = "Primary on-call"
    urgency: str = (
        "high"  # the service's urgency rule: "high", "low", or "severity_based" (critical/error high)
    )


class PagerDutyEmulator(_Emulator):
    def __init__(self, *, api_token: str) -> None:
        self.api_token = api_token
        self.services: dict[str, PdService] = {}  # routing key -> service
        self.incidents: dict[str, dict[str, Any]] = {}  # dedup key -> incident
        self.maintenance: dict[str, dict[str, Any]] = {}  # service id -> ongoing window
        super().__init__()

    def route(self, h: Any, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
        if method == "POST" and path == "/v2/enqueue":
            return self._enqueue(h, body)
        if h.headers.get("Authorization") != f"Token token={self.api_token}":
            return h.reply(401, {"error": {"message": "Authentication failed", "code": 2006}})
        with self.lock:
            if method == "GET" and path == "/incidents":
                keys = query.get("incident_key", [])
                found = [i for k, i in self.incidents.items() if not keys or k in keys]
                return h.reply(
                    200, {"incidents": found, "limit": 25, "offset": 0, "more": False, "total": None}
                )
            if method == "GET" and path == "/maintenance_windows":
                ids = query.get("service_ids[]", [])
                return h.reply(
                    200, {"maintenance_windows": [w for s, w in self.maintenance.items() if s in ids]}
                )
        h.reply(404, {"error": {"message": "Not Found", "code": 2100}})

    def _enqueue(self, h: Any, body: Any) -> None:
        if not isinstance(body, dict) or body.get("routing_key") not in self.services:
            return h.reply(
                400,
                {
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": ["Invalid routing key"],
                },
            )
        action, key = body.get("event_action"), body.get("dedup_key") or uuid.uuid4().hex
        payload = body.get("payload") or {}
        if action == "trigger" and not all(payload.get(k) for k in ("summary", "source", "severity")):
            return h.reply(
                400,
                {
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": ["payload is incomplete"],
                },
            )
        with self.lock:
            self.received.append(body)
            if action == "resolve" and self.knobs.fail_resolves > 0:
                self.knobs.fail_resolves -= 1
                return h.reply(500, {"status": "error"})
            self.later({**body, "dedup_key": key})
        self.hold_answer()
        h.reply(202, {"status": "success", "message": "Event processed", "dedup_key": key})

    def apply(self, event: dict[str, Any]) -> None:
        key, service = event["dedup_key"], self.services[event["routing_key"]]
        incident = self.incidents.get(key)
        if event["event_action"] == "trigger":
            if self.knobs.drop or service.id in self.maintenance:
                return
            if incident and incident["status"] != "resolved":
                incident["alert_counts"]["all"] += 1
                return
            self.incidents[key] = {
                "id": "Q" + uuid.uuid4().hex[:13].upper(),
                "type": "incident",
                "incident_key": key,
                "title": event["payload"]["summary"],
                "status": "triggered",
                "urgency": service.urgency
                if service.urgency != "severity_based"
                else ("high" if event["payload"].get("severity") in ("critical", "error") else "low"),
                "created_at": datetime.now(UTC).isoformat(),
                "service": {"id": service.id, "type": "service_reference"},
                "escalation_policy": {
                    "id": service.escalation_policy,
                    "type": "escalation_policy_reference",
                    "summary": service.policy_name,
                },
                "alert_counts": {"all": 1},
            }
        elif event["event_action"] == "resolve" and incident:
            incident["status"] = "resolved"


class OpsgenieEmulator(_Emulator):
    def __init__(self) -> None:
        self.keys: dict[str, dict[str, str]] = {}  # API key -> team {"id", "name"} of its integration
        self.alerts: dict[str, dict[str, Any]] = {}  # alias -> alert
        self.requests: dict[str, dict[str, Any]] = {}  # requestId -> processed status
        self.snooze = False  # a policy snoozes new alerts: nobody is notified
        self.priority_policy: str | None = (
            None  # an alert policy that sets every new alert's priority (e.g. "P5")
        )
        super().__init__()

    def route(self, h: Any, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
        auth = h.headers.get("Authorization", "")
        if not auth.startswith("GenieKey ") or auth.removeprefix("GenieKey ") not in self.keys:
            return h.reply(
                401, {"message": "Could not authenticate", "took": 0.0, "requestId": str(uuid.uuid4())}
            )
        team = self.keys[auth.removeprefix("GenieKey ")]
        parts = [p for p in path.split("/") if p]
        with self.lock:
            if method == "POST" and parts == ["v2", "alerts"]:
                if not isinstance(body, dict) or not body.get("message"):
                    return h.reply(
                        422,
                        {
                            "message": "Request has validation errors",
                            "errors": {"message": "Message can not be empty."},
                        },
                    )
                self.received.append(body)
                rid = self._queue(
                    {
                        "action": "Create",
                        "alias": body.get("alias") or uuid.uuid4().hex,
                        "body": body,
                        "team": team,
                    }
                )
            elif (
                method == "POST" and len(parts) == 4 and parts[:2] == ["v2", "alerts"] and parts[3] == "close"
            ):
                if self.knobs.fail_resolves > 0:
                    self.knobs.fail_resolves -= 1
                    return h.reply(500, {"message": "Internal error"})
                rid = self._queue({"action": "Close", "alias": parts[2]})
            elif method == "GET" and len(parts) == 4 and parts[:3] == ["v2", "alerts", "requests"]:
                status = self.requests.get(parts[3])
                if status is None:
                    return h.reply(
                        404,
                        {
                            "message": "Request not found. It might not be processed, yet.",
                            "took": 0.001,
                            "requestId": str(uuid.uuid4()),
                        },
                    )
                return h.reply(200, {"data": status, "took": 0.001, "requestId": str(uuid.uuid4())})
            elif method == "GET" and len(parts) == 3 and parts[:2] == ["v2", "alerts"]:
                if query.get("identifierType", ["id"])[0] != "alias" or parts[2] not in self.alerts:
                    return h.reply(
                        404,
                        {"message": "Alert does not exist", "took": 0.001, "requestId": str(uuid.uuid4())},
                    )
                return h.reply(
                    200, {"data": self.alerts[parts[2]], "took": 0.001, "requestId": str(uuid.uuid4())}
                )
            else:
                return h.reply(404, {"message": "Not found"})
        if parts == ["v2", "alerts"]:
            self.hold_answer()
        h.reply(202, {"result": "Request will be processed", "took": 0.01, "requestId": rid})

    def _queue(self, event: dict[str, Any]) -> str:
        rid = str(uuid.uuid4())
        self.later({**event, "requestId": rid})
        return rid

    def apply(self, event: dict[str, Any]) -> None:
        alias, alert = event["alias"], self.alerts.get(event["alias"])
        status = {
            "success": True,
            "action": event["action"],
            "processedAt": datetime.now(UTC).isoformat(),
            "integrationId": "emulated-integration",
            "isSuccess": True,
            "alias": alias,
        }
        if event["action"] == "Create":
            if self.knobs.drop:
                status.update(
                    success=False, isSuccess=False, status="Alert discarded: no integration rule matched"
                )
            elif alert and alert["status"] == "open":
                alert["count"] += 1
                status.update(status="Alert is de-duplicated", alertId=alert["id"])
            else:
                team = event["team"]
                self.alerts[alias] = {
                    "id": uuid.uuid4().hex,
                    "tinyId": str(len(self.alerts) + 1),
                    "alias": alias,
                    "message": event["body"]["message"],
                    "status": "open",
                    "acknowledged": False,
                    "snoozed": self.snooze,
                    "isSeen": False,
                    "count": 1,
                    "priority": self.priority_policy or event["body"].get("priority", "P3"),
                    "source": event["body"].get("source", ""),
                    "teams": [{"id": team["id"]}],
                    "responders": [{"type": "team", "id": team["id"]}],
                    "createdAt": datetime.now(UTC).isoformat(),
                }
                status.update(status="Created alert", alertId=self.alerts[alias]["id"])
        elif event["action"] == "Close":
            if alert:
                alert["status"] = "closed"
                status.update(status="Closed alert", alertId=alert["id"])
            else:
                status.update(success=False, isSuccess=False, status="Alert does not exist")
        self.requests[event["requestId"]] = status
