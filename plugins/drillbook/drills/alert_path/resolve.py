"""Resolve a canary after any send that may have landed; never leave a test page firing.

Rules this module enforces:
- a canary is resolved whenever a send may have reached the far end — a 2xx,
  a 5xx, a timeout or a broken answer — whatever the verdict (a FAIL, an ERROR
  after a timeout); only a refused connection or a 4xx proves it never landed;
- the resolve waits patiently (``RESOLVE_TIMEOUT``, at least 3x the request
  timeout) and is tried ``RESOLVE_ATTEMPTS`` times, because the path may be slow
  exactly when it is being drilled;
- the resolve's own result is evidence (``cleanup``; a failure is
  ``ALERT_CLEANUP_FAILED``), and for Alertmanager the alert list is read again
  to confirm the canary is no longer active;
- a stop signal (SIGTERM/SIGINT) never cuts a resolve short: it is held until
  the resolve has finished, then honoured (``DRILL_INTERRUPTED``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from drillbook.drills.alert_path import bounded
from drillbook.drills.alert_path.canary import Canary
from drillbook.drills.alert_path.catalogue import WebhookPath
from drillbook.drills.alert_path.delivery import Delivery
from drillbook.drills.alert_path.stop import signals_held
from drillbook.drills.alert_path.webhook_target import WebhookTarget, join_url, read_headers
from drillbook.drills.base import ResultBuilder
from drillbook.safety.redact import redact

RESOLVE_ATTEMPTS = 2
RESOLVE_TIMEOUT = 30.0  # at least this (and 3x the request timeout): a slow path must still get its resolve


def resolve_canary(
    builder: ResultBuilder,
    http: Any,
    *,
    path: WebhookPath,
    target: WebhookTarget,
    canary: Canary,
    delivery: Delivery,
) -> None:
    """Resolve a canary that may have landed, patiently and twice at most; record what happened.

    A stop signal that arrives meanwhile is held until the resolve has finished (``signals_held``).
    """
    with signals_held():
        _resolve(builder, http, path=path, target=target, canary=canary, delivery=delivery)


def _resolve(
    builder: ResultBuilder,
    http: Any,
    *,
    path: WebhookPath,
    target: WebhookTarget,
    canary: Canary,
    delivery: Delivery,
) -> None:
    import httpx

    with builder.phase("cleanup") as ph:
        if not path.resolve or target.flavour == "generic":
            ph.skip("resolve: off" if not path.resolve else "generic webhooks have no resolve call")
            delivery.cleanup = "not applicable"
            return
        if not delivery.may_have_landed:
            ph.skip("nothing landed (refused or 4xx): nothing to resolve")
            delivery.cleanup = "not needed: the send never landed"
            return
        request: tuple[str, Any]
        if target.flavour == "pagerduty":
            request = (
                target.url,
                canary.pagerduty_event(routing_key=str(target.routing_key), action="resolve"),
            )
        elif target.flavour == "alertmanager":
            request = (target.url, canary.alertmanager_alerts(ends_at=datetime.now(UTC)))
        else:  # opsgenie: close by alias
            request = (
                join_url(target.url, f"{canary.nonce}/close?identifierType=alias"),
                canary.opsgenie_close(),
            )
        timeout = max(RESOLVE_TIMEOUT, 3 * path.request_timeout)
        error = ""
        for attempt in range(1, RESOLVE_ATTEMPTS + 1):
            try:
                response = bounded.request(
                    http,
                    "POST",
                    request[0],
                    within=timeout,
                    json=request[1],
                    headers=target.headers,
                    timeout=timeout,
                )
                error = "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                error = type(exc).__name__
            if not error or error.startswith("HTTP 4"):
                break
            if attempt < RESOLVE_ATTEMPTS:
                time.sleep(1.0)
        delivery.extra["resolve_attempts"] = attempt
        if not error:
            delivery.cleanup = "resolved"
            if target.flavour == "alertmanager":
                from drillbook.drills.alert_path.alertmanager_api import confirm_resolved

                gone = confirm_resolved(http, target.url, read_headers(target), canary)
                delivery.cleanup = {
                    True: "resolved (Alertmanager no longer lists it active)",
                    False: "resolve sent, still active in Alertmanager",
                    None: "resolve sent (Alertmanager could not be read to confirm)",
                }[gone]
                if gone is False:
                    error = "still active after the resolve"
            ph.detail = delivery.cleanup
            if not error:
                return
        else:
            delivery.cleanup = f"failed: {error}"
        ph.status, ph.detail = "failed", delivery.cleanup
        builder.find(
            "ALERT_CLEANUP_FAILED",
            f"could not resolve the {target.flavour} canary {canary.nonce} at {target.shown}: {redact(error)}; resolve it by hand",
            subject=path.name,
            detail={"error": error, "flavour": target.flavour, "dedup_key": canary.nonce},
        )
