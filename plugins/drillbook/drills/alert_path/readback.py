"""Read a webhook canary back at a URL the far end serves: only the nonce in a complete 2xx page counts.

Rules this module enforces:
- the canary is seen only when its nonce is in the body of a 2xx answer;
  an error page or a redirect that mentions it proves nothing (redirects are
  not followed);
- a read-back that echoes the nonce it is asked for proves nothing: when the
  URL names the nonce, a decoy nonce that was never sent is asked for once
  too, and if it shows, the path is ``ALERT_READBACK_FAILED``;
- every read is bounded in bytes (``READBACK_MAX_BYTES``, streamed, never held
  whole) and in time (the request timeout, never past ``give_up``); a page cut
  short proves neither arrival nor absence, so a read-back that never gives a
  complete 2xx page is ``ALERT_READBACK_FAILED``, never ``ALERT_NOT_DELIVERED``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drillbook.drills.alert_path.canary import Canary
from drillbook.drills.alert_path.catalogue import WebhookPath
from drillbook.drills.alert_path.delivery import Delivery, judge
from drillbook.drills.base import ResultBuilder
from drillbook.errors import DrillAborted
from drillbook.safety.redact import redact_url

if TYPE_CHECKING:
    from drillbook.drills.alert_path.webhook_target import WebhookTarget

READBACK_MAX_BYTES = 20 * 1024 * 1024  # a read-back page larger than this is not searched further


@dataclass
class _Read:
    """One read-back GET: its status, whether the needle was in the body, and whether the body was read whole."""

    status: int
    found: bool = False
    cut: str = ""  # why the body was not read to its end ("" when it was, or when the needle was found)


def _contains(http: Any, url: str, headers: dict[str, str], needle: str, *, within: float) -> _Read:
    """GET ``url`` and stream its body looking for ``needle``, for at most ``within`` seconds and ``READBACK_MAX_BYTES``.

    A body cut short (too large, or still arriving when time is up) proves
    neither that the canary arrived nor that it did not.
    """
    deadline = time.monotonic() + within
    with http.stream("GET", url, headers=headers) as response:
        if not 200 <= response.status_code < 300:
            return _Read(response.status_code)
        tail, read = "", 0
        for chunk in response.iter_text():
            window = tail + chunk
            if needle in window:
                return _Read(response.status_code, found=True)
            tail, read = window[-len(needle) :], read + len(chunk)
            if read > READBACK_MAX_BYTES:
                return _Read(
                    response.status_code,
                    cut=f"page larger than {READBACK_MAX_BYTES // (1024 * 1024)} MB, not read to its end",
                )
            if time.monotonic() > deadline:
                return _Read(
                    response.status_code, cut=f"page still arriving after {within:.0f}s, not read to its end"
                )
        return _Read(response.status_code)


def _echoes(http: Any, path: WebhookPath, origin: str, headers: dict[str, str], within: float) -> bool:
    """True when the read-back shows a nonce that was never sent, merely because the URL asked for it."""
    import secrets

    from drillbook.drills.alert_path.canary import MARKER

    decoy = f"{MARKER}-{secrets.token_hex(8)}"
    url = str(path.readback_url).replace("{nonce}", decoy)
    if url.startswith("/"):
        url = origin + url
    return _contains(http, url, headers, decoy, within=within).found


def read_back(
    builder: ResultBuilder,
    http: Any,
    *,
    path: WebhookPath,
    target: WebhookTarget,
    canary: Canary,
    delivery: Delivery,
    interval: float,
    not_seen: Any = None,
    keep_firing: Any = None,
) -> None:
    """Poll ``readback_url`` for the nonce; ``not_seen()`` adds corroborating detail when it never shows.

    ``keep_firing()`` is called before every read (it re-sends the canary when due).
    """
    import httpx

    with builder.phase("read back") as ph:
        if not path.readback_url:
            delivery.mark_accepted_only()
            ph.skip("not configured: accepted, not seen")
            builder.checked()
            return
        url = path.readback_url.replace("{nonce}", canary.nonce)
        if url.startswith("/"):
            url = target.origin + url
        same_origin = url.startswith(target.origin + "/")
        headers = target.readback_headers or (
            {k: v for k, v in target.headers.items() if k != "Content-Type"} if same_origin else {}
        )
        state: dict[str, Any] = {"answered": False, "last": None, "echo": False}
        within = max(path.request_timeout, 1.0)

        def look(remaining: float) -> bool:
            if keep_firing is not None:
                keep_firing()  # the router may have lost the canary (a restart): send it again, as its senders do
            try:
                read = _contains(http, url, headers, canary.nonce, within=max(min(remaining, within), 0.5))
                if read.found and "{nonce}" in str(path.readback_url):
                    # the URL names the nonce: a page that merely repeats its query (a search page,
                    # a "no results for ..." page) must not count as the canary seen
                    state["echo"] = _echoes(http, path, target.origin, headers, within)
            except httpx.TransportError as exc:
                state["last"] = type(exc).__name__
                return False
            state["last"] = f"HTTP {read.status}" + (f" ({read.cut})" if read.cut else "")
            if read.found:
                return True
            # only a page read to its end without the nonce shows the canary is not there (yet)
            state["answered"] = state["answered"] or (200 <= read.status < 300 and not read.cut)
            return False

        delivery.poll(look, interval=interval)
        delivery.extra["readback_url"] = redact_url(url)
        if state["echo"]:
            delivery.seen_at, delivery.latency_seconds = None, None
            builder.find(
                "ALERT_READBACK_FAILED",
                f"the read-back {redact_url(url)} echoes the nonce it is asked for (a nonce never sent showed there too); "
                "it cannot show that the canary arrived: point readback_url at a page that lists what the receiver got",
                subject=path.name,
                detail={"readback_url": redact_url(url), "polls": delivery.polls},
            )
            ph.status, ph.detail = "failed", "read-back echoes its query"
            raise DrillAborted("read back")
        if not delivery.seen and not state["answered"]:
            builder.find(
                "ALERT_READBACK_FAILED",
                f"the read-back {redact_url(url)} never gave a complete 2xx answer (last: {state['last']}); delivery could not be verified",
                subject=path.name,
                detail={"readback_url": redact_url(url), "last": state["last"], "polls": delivery.polls},
            )
            ph.status, ph.detail = "failed", f"read-back failed: {state['last']}"
            raise DrillAborted("read back")
        ph.detail = (
            f"seen after {delivery.latency_seconds:.2f}s"
            if delivery.seen
            else f"not seen after {delivery.polls} reads"
        )
    extra: dict[str, Any] = {"readback_url": redact_url(url)}
    reason = ""
    if not delivery.seen and not_seen is not None:
        more, reason = not_seen()
        extra.update(more)
    judge(builder, delivery, not_seen_detail=extra, not_seen_reason=reason)
