"""Judge an Alertmanager canary strictly through Alertmanager's own API (v2).

Rules this module enforces:
- Alertmanager's ``GET /api/v2/alerts`` lists silenced, inhibited and
  unprocessed alerts too, so "the nonce is in the list" proves nothing. The
  canary passes this check only with ``status.state == "active"``, no
  ``silencedBy``, no ``inhibitedBy`` and the catalogue's receiver among its
  ``receivers``; otherwise ``ALERT_SUPPRESSED`` (naming the silence ids, or the
  inhibiting alerts) or ``ALERT_UNROUTED`` (naming the receivers it went to);
- this is a routing check, not delivery: the receiver's own read-back still has
  to see the canary (``webhook_path``). When it does not, the rise of
  ``alertmanager_notification_requests_failed_total`` corroborates the finding;
- everything Alertmanager answers is untrusted: bodies are read up to
  ``API_MAX_BYTES`` and within a time budget (``bounded``), texts (silence comments) are cut short, JSON of the wrong
  shape counts as "no answer", never a crash.
"""

from __future__ import annotations

import re
from typing import Any

from drillbook.drills.alert_path.canary import Canary
from drillbook.drills.alert_path.catalogue import WebhookPath
from drillbook.drills.alert_path.delivery import Delivery
from drillbook.drills.base import ResultBuilder
from drillbook.errors import DrillAborted

API_MAX_BYTES = 5 * 1024 * 1024
_FAILED = re.compile(r"^alertmanager_notification_requests_failed_total\{([^}]*)\}\s+([0-9.eE+-]+)\s*$", re.M)


def get_json(
    http: Any, url: str, headers: dict[str, str], *, params: dict[str, Any] | None = None
) -> tuple[int | None, Any]:
    """GET ``url`` and parse at most ``API_MAX_BYTES`` of JSON: (status, body) or (None, error name)."""
    import httpx

    from drillbook.drills.alert_path.bounded import request

    try:
        response = request(http, "GET", url, max_bytes=API_MAX_BYTES, headers=headers, params=params)
    except httpx.TransportError as exc:
        return None, type(exc).__name__
    if not 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, response.json()


def failed_notifications(http: Any, origin: str, headers: dict[str, str]) -> dict[str, float] | None:
    """``alertmanager_notification_requests_failed_total`` per integration, or None when /metrics is unreadable."""
    import httpx

    from drillbook.drills.alert_path.bounded import request

    try:
        response = request(http, "GET", f"{origin}/metrics", max_bytes=API_MAX_BYTES, headers=headers)
    except httpx.TransportError:
        return None
    if response.status_code != 200 or response.cut:
        return None
    counts: dict[str, float] = {}
    for labels, value in _FAILED.findall(response.text):
        integration = re.search(r'integration="([^"]*)"', labels)
        key = integration.group(1) if integration else labels
        counts[key] = counts.get(key, 0.0) + float(value)
    return counts


def failed_delta(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float] | None:
    """How many notification requests failed meanwhile, per integration (only those that rose)."""
    if before is None or after is None:
        return None
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v > before.get(k, 0.0)}


def _canary_alert(body: Any, nonce: str) -> dict[str, Any] | None:
    if not isinstance(body, list):
        return None
    for alert in body:
        if (
            isinstance(alert, dict)
            and isinstance(alert.get("labels"), dict)
            and alert["labels"].get("drillbook_nonce") == nonce
        ):
            return alert
    return None


def canary_status(
    http: Any, alerts_url: str, headers: dict[str, str], canary: Canary
) -> tuple[int | None, dict[str, Any] | None]:
    """(HTTP status, the canary's alert as Alertmanager shows it, silenced/inhibited ones included)."""
    status, body = get_json(http, alerts_url, headers, params={"filter": f'drillbook_nonce="{canary.nonce}"'})
    return status, _canary_alert(body, canary.nonce)


def short(value: Any, limit: int = 120) -> str:
    text = str(value or "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _silences(http: Any, origin: str, headers: dict[str, str], ids: list[str]) -> list[dict[str, str]]:
    named = []
    for silence_id in ids[:5]:
        _, body = get_json(http, f"{origin}/api/v2/silence/{silence_id}", headers)
        body = body if isinstance(body, dict) else {}
        named.append(
            {
                "id": short(silence_id, 64),
                "createdBy": short(body.get("createdBy"), 64),
                "comment": short(body.get("comment")),
            }
        )
    return named


def _inhibitors(
    http: Any, alerts_url: str, headers: dict[str, str], fingerprints: list[str]
) -> list[dict[str, Any]]:
    _, body = get_json(http, alerts_url, headers, params={"silenced": "false", "inhibited": "false"})
    by_fp = {a.get("fingerprint"): a for a in body if isinstance(a, dict)} if isinstance(body, list) else {}
    named = []
    for fp in fingerprints[:5]:
        labels = (by_fp.get(fp) or {}).get("labels")
        labels = labels if isinstance(labels, dict) else {}
        named.append(
            {
                "fingerprint": short(fp, 64),
                "alertname": short(labels.get("alertname", "?"), 64),
                "labels": labels,
            }
        )
    return named


def _inhibit_rules(
    http: Any,
    origin: str,
    headers: dict[str, str],
    canary_labels: dict[str, Any],
    inhibitors: list[dict[str, Any]],
) -> list[str]:
    """The inhibit rules (from the running config) that the firing source alerts and the canary satisfy."""
    from drillbook.drills.alert_path.alertmanager_inhibit import inhibit_rules, naming

    _, status = get_json(http, f"{origin}/api/v2/status", headers)
    config = status.get("config") if isinstance(status, dict) else None
    rules = inhibit_rules(config.get("original") if isinstance(config, dict) else None)
    return [short(n, 300) for n in naming(rules, canary_labels, [i["labels"] for i in inhibitors])][:3]


def check_route(
    builder: ResultBuilder,
    http: Any,
    *,
    path: WebhookPath,
    alerts_url: str,
    origin: str,
    headers: dict[str, str],
    canary: Canary,
    delivery: Delivery,
    interval: float,
) -> None:
    """Wait until Alertmanager has processed the canary, then judge state, suppression and receiver strictly."""
    import time

    with builder.phase("route check") as ph:
        seen: dict[str, Any] = {"alert": None, "answered": False, "last": None}
        deadline = time.monotonic() + max(0.0, delivery.remaining())
        while True:
            status, alert = canary_status(http, alerts_url, headers, canary)
            seen["last"] = f"HTTP {status}" if status is not None else "no answer"
            seen["answered"] = seen["answered"] or (status is not None and 200 <= status < 300)
            if alert is not None:
                seen["alert"] = alert
                if (alert.get("status") or {}).get("state") != "unprocessed":
                    break
            if time.monotonic() + interval > deadline:
                break
            time.sleep(interval)
        alert = seen["alert"]
        builder.checked()
        if alert is None:
            code = "ALERT_NOT_DELIVERED" if seen["answered"] else "ALERT_READBACK_FAILED"
            builder.find(
                code,
                f"Alertmanager accepted the canary {canary.nonce} but never listed it (last read: {seen['last']})"
                if seen["answered"]
                else f"Alertmanager's alert list {alerts_url.split('?')[0]} never answered 2xx (last: {seen['last']})",
                subject=path.name,
                detail={"last": seen["last"]},
            )
            ph.status, ph.detail = "failed", f"canary not listed ({seen['last']})"
            raise DrillAborted("route check")
        state = alert.get("status") if isinstance(alert.get("status"), dict) else {}
        silenced = [str(s) for s in state.get("silencedBy") or []]
        inhibited = [str(s) for s in state.get("inhibitedBy") or []]
        receivers = [str(r.get("name")) for r in alert.get("receivers") or [] if isinstance(r, dict)]
        delivery.extra["alertmanager"] = {
            "state": state.get("state"),
            "receivers": receivers,
            "silenced_by": silenced,
            "inhibited_by": inhibited,
        }
        if silenced or inhibited or state.get("state") != "active":
            silences = _silences(http, origin, headers, silenced) if silenced else []
            inhibitors = _inhibitors(http, alerts_url, headers, inhibited) if inhibited else []
            canary_labels = alert.get("labels") if isinstance(alert.get("labels"), dict) else {}
            rules = _inhibit_rules(http, origin, headers, canary_labels, inhibitors) if inhibitors else []
            sources = ", ".join(f"{i['alertname']} ({i['fingerprint']})" for i in inhibitors)
            by = (
                "; ".join(
                    [
                        f"silence {s['id']} by {s['createdBy'] or '?'} ({s['comment'] or 'no comment'})"
                        for s in silences
                    ]
                    + (
                        [f"{' and '.join(rules) or 'an inhibit rule'} while source alert {sources} fires"]
                        if inhibitors
                        else []
                    )
                )
                or f"state {state.get('state')!r}"
            )
            builder.find(
                "ALERT_SUPPRESSED",
                f"Alertmanager holds the canary on path {path.name!r} as {state.get('state')!r}: suppressed by {by}; nobody is paged",
                subject=path.name,
                detail={
                    "state": state.get("state"),
                    "silence_ids": ", ".join(s["id"] for s in silences) or None,
                    "inhibited_by": ", ".join(f"{i['alertname']} ({i['fingerprint']})" for i in inhibitors)
                    or None,
                    "inhibit_rules": "; ".join(rules) if inhibitors else None,
                },
            )
            ph.status, ph.detail = "failed", f"suppressed: {by}"
            raise DrillAborted("route check")
        if path.receiver not in receivers:
            builder.find(
                "ALERT_UNROUTED",
                f"Alertmanager routed the canary on path {path.name!r} to {receivers or 'no receiver'}, "
                f"not to {path.receiver!r}; check the route's matchers against the canary's labels",
                subject=path.name,
                detail={"receivers": ", ".join(receivers), "expected_receiver": path.receiver},
            )
            ph.status, ph.detail = "failed", f"routed to {receivers}, expected {path.receiver!r}"
            raise DrillAborted("route check")
        ph.detail = f"active, routed to {receivers}"


def confirm_resolved(
    http: Any,
    alerts_url: str,
    headers: dict[str, str],
    canary: Canary,
    *,
    tries: int = 10,
    interval: float = 0.2,
) -> bool | None:
    """True once Alertmanager no longer lists the canary as active; None when it could not be read."""
    import time

    for _ in range(tries):
        status, alert = canary_status(http, alerts_url, headers, canary)
        if status is None or not 200 <= status < 300:
            return None
        if alert is None or (alert.get("status") or {}).get("state") != "active":
            return True
        time.sleep(interval)
    return False
