"""Prove an HTTP webhook path (generic, PagerDuty Events v2, Opsgenie, Alertmanager).

Rules this module enforces:
- the canary must be accepted with a 2xx. A 4xx is ``ALERT_REJECTED`` at once.
  A 5xx or 429 is retried (``SEND_ATTEMPTS`` in all, short backoff, never past
  ``give_up``) because the senders we stand in for (Alertmanager, monitoring
  agents) retry too; a path that still answers 5xx is ``ALERT_REJECTED``.
  No answer (refused, timeout, DNS) after the same retries is
  ``ALERT_PATH_UNREACHABLE`` (ERROR: nothing was verified);
- with a ``readback_url`` the canary counts as delivered only when its nonce
  appears there; without one a generic webhook proves acceptance only: the
  evidence says "accepted, not seen" and holds no latency. Paging flavours
  must be confirmed at the far end: Alertmanager by its API (strictly, see
  ``alertmanager_api``) and then the receiver's read-back, held firing until
  the receiver shows it (after ``group_wait``); PagerDuty and Opsgenie by their
  REST APIs (``pager_api``);
- a read-back that never answers 2xx is ``ALERT_READBACK_FAILED`` (could not
  verify), never ``ALERT_NOT_DELIVERED``; so is one whose pages are never read
  to their end (larger than ``READBACK_MAX_BYTES``, or still arriving after the
  request timeout: each read is bounded in bytes and in time), and one that
  echoes the nonce it is asked for (a decoy nonce that was never sent shows up
  too). Only the nonce in a 2xx body counts; redirects are not followed;
- a canary sent to a paging system is resolved after ANY send that may have
  landed (a 2xx, a 5xx, a timeout or a broken answer — not a refused
  connection or a 4xx), whatever the verdict, with a patient timeout
  (``RESOLVE_TIMEOUT``); the resolve's own result is evidence (``cleanup``) and
  Alertmanager is read again to confirm the canary is no longer active;
- the target (URL, headers, secrets) is built by ``webhook_target``; evidence
  shows only ``redact_url(url)``.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from drillbook.drills.alert_path.canary import Canary
from drillbook.drills.alert_path.catalogue import WebhookPath
from drillbook.drills.alert_path.delivery import Delivery
from drillbook.drills.alert_path.readback import read_back as _read_back
from drillbook.drills.alert_path.webhook_target import WebhookTarget, am_root, read_headers, webhook_target
from drillbook.drills.base import ResultBuilder
from drillbook.errors import ConfigurationError, DrillAborted
from drillbook.resources.connections import Connection

SEND_ATTEMPTS = 3
RESEND_SECONDS = 5.0  # a held Alertmanager canary is re-posted this often (Prometheus: resend-delay 1m)
SEND_ANSWER_MAX_BYTES = 64 * 1024  # a send's answer is a short JSON; beyond this it is not read (nor parsed)
MAX_RETRY_AFTER = 30.0


def _body(target: WebhookTarget, canary: Canary, sent_at: datetime | None = None) -> Any:
    if target.flavour == "pagerduty":
        return canary.pagerduty_event(routing_key=str(target.routing_key))
    if target.flavour == "opsgenie":
        return canary.opsgenie_alert()
    if target.flavour == "alertmanager":
        return canary.alertmanager_alerts(starts_at=sent_at)
    return canary.generic_payload()


def _retry_after(response: Any) -> float | None:
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(response.headers.get("Retry-After", ""))))
    except ValueError:
        return None


def _answer(response: Any) -> Any:
    """The 2xx answer's JSON (Opsgenie's requestId lives there), or None; read within budget by ``bounded``."""
    return response.json()


def _send(
    builder: ResultBuilder,
    http: Any,
    *,
    path: WebhookPath,
    target: WebhookTarget,
    canary: Canary,
    delivery: Delivery,
) -> Any:
    """POST the canary (retrying 5xx/429/no answer); return the 2xx answer's JSON. Sets ``may_have_landed``."""
    import httpx

    from drillbook.drills.alert_path.bounded import request

    with builder.phase("send") as ph:
        delivery.mark_sent()
        body = _body(target, canary, delivery.sent_at)
        last_error = ""
        for attempt in range(1, SEND_ATTEMPTS + 1):
            delivery.attempts = attempt
            try:
                response = request(
                    http,
                    "POST",
                    target.url,
                    max_bytes=SEND_ANSWER_MAX_BYTES,
                    json=body,
                    headers=target.headers,
                )
                delivery.http_status, last_error = response.status_code, ""
                if 200 <= response.status_code < 300:
                    delivery.may_have_landed = True
                    ph.detail = f"HTTP {response.status_code} from {target.shown} after {attempt} attempt(s)"
                    return _answer(response)
                if response.status_code >= 500:
                    delivery.may_have_landed = (
                        True  # a proxy or a half-done write may still have passed it on
                    )
                elif response.status_code != 429:
                    break  # 3xx/4xx: an answer that will not change on retry
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                delivery.http_status, last_error = None, type(exc).__name__  # never left this host
            except httpx.TransportError as exc:
                # timed out or broken after the request went out: it may have landed
                delivery.http_status, last_error, delivery.may_have_landed = None, type(exc).__name__, True
            backoff = 0.5 * attempt
            if delivery.http_status == 429:
                backoff = _retry_after(response) or backoff
            if attempt == SEND_ATTEMPTS or delivery.remaining() <= backoff:
                break
            time.sleep(backoff)
        if last_error:
            builder.find(
                "ALERT_PATH_UNREACHABLE",
                f"webhook {target.shown} did not answer ({last_error}) after {delivery.attempts} attempt(s)",
                subject=path.name,
                detail={"error": last_error, "attempts": delivery.attempts, "url": target.shown},
            )
            ph.status, ph.detail = "failed", f"unreachable: {last_error}"
        else:
            builder.checked()
            builder.find(
                "ALERT_REJECTED",
                f"webhook {target.shown} answered HTTP {delivery.http_status} after {delivery.attempts} attempt(s); expected 2xx",
                subject=path.name,
                detail={
                    "http_status": delivery.http_status,
                    "attempts": delivery.attempts,
                    "url": target.shown,
                    "flavour": path.flavour,
                },
            )
            ph.status, ph.detail = "failed", f"rejected: HTTP {delivery.http_status}"
        raise DrillAborted("send")


def _far_end(
    builder: ResultBuilder,
    http: Any,
    answer: Any,
    *,
    path: WebhookPath,
    target: WebhookTarget,
    api: Connection | None,
    canary: Canary,
    delivery: Delivery,
    interval: float,
) -> None:
    """Read the canary back where it pages a person (flavour by flavour)."""
    if target.flavour == "alertmanager":
        from drillbook.drills.alert_path import alertmanager_api as am

        root = am_root(target)
        am.check_route(
            builder,
            http,
            path=path,
            alerts_url=target.url,
            origin=root,
            headers=read_headers(target),
            canary=canary,
            delivery=delivery,
            interval=interval,
        )

        def corroborate() -> tuple[dict[str, Any], str]:
            delta = am.failed_delta(
                delivery.extra.pop("_failed_before", None),
                am.failed_notifications(http, root, read_headers(target)),
            )
            shown = ", ".join(f"{k}+{v:g}" for k, v in sorted((delta or {}).items())) or None
            detail = {
                "notification_requests_failed": shown,
                "notification_requests_failed_total": sum((delta or {}).values())
                if delta is not None
                else None,
            }
            reason = f"receiver {path.receiver!r} never showed it"
            return detail, reason + (
                f"; Alertmanager's failed notification requests rose ({shown})" if shown else ""
            )

        def keep_firing() -> None:
            _resend(http, target, canary, delivery)

        _read_back(
            builder,
            http,
            path=path,
            target=target,
            canary=canary,
            delivery=delivery,
            interval=interval,
            not_seen=corroborate,
            keep_firing=keep_firing,
        )
        if "_failed_before" in delivery.extra:  # seen: keep the counter's movement as evidence all the same
            delivery.extra["notification_requests_failed"] = corroborate()[0]["notification_requests_failed"]
        return
    if target.flavour in ("pagerduty", "opsgenie") and (api is not None or target.flavour == "opsgenie"):
        from drillbook.drills.alert_path import pager_api

        try:
            rest = pager_api.api_target(api or _events_as_api(target, path), flavour=target.flavour)
        except ConfigurationError as exc:
            builder.find("CONFIG_INVALID", str(exc), subject=path.name)
            raise DrillAborted("configure") from None
        if target.flavour == "pagerduty":
            pager_api.confirm_pagerduty(
                builder, http, path=path, api=rest, canary=canary, delivery=delivery, interval=interval
            )
        else:
            request_id = (
                answer.get("requestId")
                if isinstance(answer, dict) and isinstance(answer.get("requestId"), str)
                else None
            )
            pager_api.confirm_opsgenie(
                builder,
                http,
                path=path,
                api=rest,
                canary=canary,
                delivery=delivery,
                interval=interval,
                request_id=request_id,
            )
        return
    _read_back(builder, http, path=path, target=target, canary=canary, delivery=delivery, interval=interval)


def _resend(http: Any, target: WebhookTarget, canary: Canary, delivery: Delivery) -> None:
    """Re-post the firing canary every ``RESEND_SECONDS`` (same labels and startsAt: Alertmanager merges it).

    Alertmanager keeps alerts in memory only; Prometheus re-sends firing alerts for that
    reason, so a restart delays a real page instead of losing it. A canary sent once
    would be lost, and the drill would report a page that had not been lost.
    """
    import httpx

    from drillbook.drills.alert_path.bounded import request

    now = time.monotonic()
    delivery.extra.setdefault("resends", 0)
    if now - float(delivery.extra.setdefault("_resent_mono", now)) < RESEND_SECONDS:
        return
    delivery.extra["_resent_mono"] = now
    try:
        response = request(
            http,
            "POST",
            target.url,
            max_bytes=SEND_ANSWER_MAX_BYTES,
            json=canary.alertmanager_alerts(starts_at=delivery.sent_at),
            headers=target.headers,
        )
        ok = 200 <= response.status_code < 300
    except httpx.TransportError:
        ok = False
    key = "resends" if ok else "resends_failed"
    delivery.extra[key] = int(delivery.extra.get(key) or 0) + 1


def _events_as_api(target: WebhookTarget, path: WebhookPath) -> Connection:
    """Opsgenie without an ``api_connection``: read with the key that created the alert, on the same host."""
    key = target.headers.get("Authorization", "").removeprefix("GenieKey ")
    return Connection(conn_id=path.connection, conn_type="http", host=target.origin, password=key or None)


def prove_webhook(
    builder: ResultBuilder,
    conn: Connection,
    *,
    path: WebhookPath,
    canary: Canary,
    delivery: Delivery,
    interval: float,
    api: Connection | None = None,
) -> None:
    """Send, read back at the far end and resolve one webhook canary; findings land on ``builder``."""
    import httpx

    from drillbook.drills.alert_path.quiet_logs import redact_logger

    redact_logger("httpx")  # httpx logs each request's full URL at INFO

    try:
        target = webhook_target(conn, path=path)
    except ConfigurationError as exc:
        builder.find("CONFIG_INVALID", str(exc), subject=path.name)
        raise DrillAborted("configure") from None
    delivery.destination = target.shown
    timeout = httpx.Timeout(path.request_timeout)
    with httpx.Client(timeout=timeout, follow_redirects=False) as http:
        if target.flavour == "alertmanager":
            from drillbook.drills.alert_path.alertmanager_api import failed_notifications

            delivery.extra["_failed_before"] = failed_notifications(
                http, am_root(target), read_headers(target)
            )
        try:
            answer = _send(builder, http, path=path, target=target, canary=canary, delivery=delivery)
            _far_end(
                builder,
                http,
                answer,
                path=path,
                target=target,
                api=api,
                canary=canary,
                delivery=delivery,
                interval=interval,
            )
        finally:
            delivery.extra.pop("_failed_before", None)
            delivery.extra.pop("_resent_mono", None)
            from drillbook.drills.alert_path.resolve import resolve_canary

            resolve_canary(builder, http, path=path, target=target, canary=canary, delivery=delivery)
