"""Prove a Slack channel path: post the canary, read it back with conversations.history, tidy up.

Rules this module enforces:
- the canary counts as delivered only when it is *read back* from the channel's
  history by its nonce — a successful chat.postMessage proves nothing about
  what people see;
- an API refusal (invalid_auth, not_in_channel, channel_not_found, missing
  scope, rate limit, persistent 5xx) is ``ALERT_REJECTED``; no answer at all is
  ``ALERT_PATH_UNREACHABLE``; a post that worked but a history that cannot be
  read is ``ALERT_READBACK_FAILED`` (could not verify) — whether the history
  refuses outright (missing scope) or never answers usefully until ``give_up``
  (5xx, 429, connection errors on every read): ``ALERT_NOT_DELIVERED`` needs at
  least one history read that succeeded and did not contain the canary;
- the token is never logged: errors are reported by their Slack error code.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from drillbook.drills.alert_path.canary import Canary
from drillbook.drills.alert_path.catalogue import SlackPath
from drillbook.drills.alert_path.delivery import Delivery, judge
from drillbook.drills.base import ResultBuilder
from drillbook.errors import DrillAborted

log = logging.getLogger(__name__)

SEND_ATTEMPTS = 3  # for HTTP 5xx only; an API error is an answer and is not retried
HISTORY_WINDOW = 1.0  # seconds either side of the canary's ts asked of conversations.history


def _slack_error(exc: Exception) -> tuple[int | None, str]:
    """(HTTP status, Slack error code) of a SlackApiError."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    error = ""
    try:
        error = str(response.get("error") or "") if response is not None else ""
    except Exception:  # a non-JSON body has no error field
        error = ""
    return status, error or f"http_{status}"


def _is_connection_error(exc: Exception) -> bool:
    import socket
    import urllib.error

    return isinstance(exc, urllib.error.URLError | ConnectionError | socket.timeout | TimeoutError)


def _post(
    builder: ResultBuilder, client: Any, *, path: SlackPath, canary: Canary, delivery: Delivery
) -> tuple[str, str]:
    """Post the canary; return (channel id, ts) or record why not and abort."""
    from slack_sdk.errors import SlackApiError

    with builder.phase("send") as ph:
        delivery.mark_sent()
        last: tuple[int | None, str] = (None, "")
        for attempt in range(1, SEND_ATTEMPTS + 1):
            delivery.attempts = attempt
            try:
                response = client.chat_postMessage(channel=path.channel, text=canary.text, unfurl_links=False)
            except SlackApiError as exc:
                last = _slack_error(exc)
                delivery.http_status = last[0]
                if last[0] is not None and last[0] >= 500 and attempt < SEND_ATTEMPTS:
                    time.sleep(min(0.5 * attempt, max(0.0, delivery.remaining())))
                    continue
                builder.checked()
                builder.find(
                    "ALERT_REJECTED",
                    f"Slack refused the test alert for {path.channel!r}: {last[1]} (HTTP {last[0]}, attempt {attempt})",
                    subject=path.name,
                    detail={
                        "slack_error": last[1],
                        "http_status": last[0],
                        "channel": path.channel,
                        "attempts": attempt,
                    },
                )
                ph.status, ph.detail = "failed", f"rejected: {last[1]}"
                raise DrillAborted("send") from None
            except Exception as exc:
                if not _is_connection_error(exc):
                    raise
                builder.find(
                    "ALERT_PATH_UNREACHABLE",
                    f"Slack API could not be reached to post to {path.channel!r}: {type(exc).__name__}: {exc}",
                    subject=path.name,
                    detail={"channel": path.channel, "error": type(exc).__name__},
                )
                ph.status, ph.detail = "failed", "unreachable"
                raise DrillAborted("send") from None
            delivery.http_status = getattr(response, "status_code", 200)
            channel_id, ts = str(response["channel"]), str(response["ts"])
            ph.detail = f"posted to {path.channel} (ts {ts}) after {attempt} attempt(s)"
            return channel_id, ts
    raise AssertionError("unreachable")  # pragma: no cover


def _read_back(
    builder: ResultBuilder,
    client: Any,
    *,
    path: SlackPath,
    canary: Canary,
    delivery: Delivery,
    channel_id: str,
    ts: str,
    interval: float,
) -> None:
    from slack_sdk.errors import SlackApiError

    window = {"oldest": f"{float(ts) - HISTORY_WINDOW:.6f}", "latest": f"{float(ts) + HISTORY_WINDOW:.6f}"}
    failure: dict[str, Any] = {}
    reads = {"ok": 0, "failed": 0}  # history calls that answered / that hiccuped (5xx, 429, connection)

    def look(_remaining: float) -> bool:
        try:
            page = client.conversations_history(channel=channel_id, inclusive=True, limit=100, **window)
        except SlackApiError as exc:
            status, error = _slack_error(exc)
            if status is not None and (status >= 500 or status == 429):
                failure.update(transient=error, http_status=status)
                reads["failed"] += 1
                return False  # Slack hiccup: keep looking until give_up
            failure.update(error=error, http_status=status)
            raise DrillAborted("read back") from None
        except Exception as exc:
            if not _is_connection_error(exc):
                raise
            failure.update(transient=type(exc).__name__)
            reads["failed"] += 1
            return False
        reads["ok"] += 1
        return any(m.get("ts") == ts or canary.found_in(m.get("text")) for m in page.get("messages") or [])

    with builder.phase("read back") as ph:
        try:
            delivery.poll(look, interval=interval)
        except DrillAborted:
            builder.find(
                "ALERT_READBACK_FAILED",
                f"the test alert was posted to {path.channel!r} but its history cannot be read: {failure.get('error')} "
                f"(the token needs channels:history / groups:history and the bot must be in the channel)",
                subject=path.name,
                detail={
                    "slack_error": failure.get("error"),
                    "http_status": failure.get("http_status"),
                    "channel": path.channel,
                },
            )
            ph.status, ph.detail = "failed", f"history refused: {failure.get('error')}"
            raise
        delivery.extra.update(history_reads_ok=reads["ok"], history_reads_failed=reads["failed"])
        if not delivery.seen and reads["ok"] == 0:
            # not one read answered: the canary may well be there; absence was never observed, so no check ran
            last = failure.get("transient")
            builder.find(
                "ALERT_READBACK_FAILED",
                f"the test alert was posted to {path.channel!r} but no read of its history succeeded in "
                f"{delivery.give_up:.0f}s ({reads['failed']} attempts, last: {last}); delivery could not be verified",
                subject=path.name,
                detail={
                    "slack_error": last,
                    "http_status": failure.get("http_status"),
                    "channel": path.channel,
                    "polls": delivery.polls,
                },
            )
            ph.status, ph.detail = "failed", f"history never readable: {last}"
            raise DrillAborted("read back")
        ph.detail = (
            f"seen after {delivery.latency_seconds:.2f}s ({delivery.polls} reads)"
            if delivery.seen
            else f"not seen after {delivery.polls} reads"
        )
    judge(
        builder,
        delivery,
        not_seen_detail={"last_transient_error": failure.get("transient")}
        if failure.get("transient")
        else None,
    )


def _cleanup(
    builder: ResultBuilder,
    client: Any,
    *,
    path: SlackPath,
    canary: Canary,
    delivery: Delivery,
    channel_id: str,
    ts: str,
) -> None:
    from slack_sdk.errors import SlackApiError

    with builder.phase("cleanup") as ph:
        if path.cleanup == "keep":
            ph.skip("cleanup: keep")
            delivery.cleanup = "kept"
            return
        try:
            if path.cleanup == "delete":
                client.chat_delete(channel=channel_id, ts=ts)
                delivery.cleanup = "deleted"
            else:
                client.chat_update(
                    channel=channel_id, ts=ts, text=canary.verified_text(latency=delivery.latency_seconds)
                )
                delivery.cleanup = "marked"
            ph.detail = delivery.cleanup
        except (SlackApiError, OSError) as exc:
            error = _slack_error(exc)[1] if isinstance(exc, SlackApiError) else type(exc).__name__
            delivery.cleanup = f"failed: {error}"
            ph.status, ph.detail = "failed", delivery.cleanup
            builder.find(
                "ALERT_CLEANUP_FAILED",
                f"could not {path.cleanup} the Slack canary (ts {ts}) in {path.channel!r}: {error}",
                subject=path.name,
                detail={"slack_error": error, "ts": ts, "channel": path.channel},
            )


def prove_slack(
    builder: ResultBuilder,
    client: Any,
    *,
    path: SlackPath,
    canary: Canary,
    delivery: Delivery,
    interval: float,
) -> None:
    """Send, read back and tidy one Slack canary; findings land on ``builder``.

    Raises ``DrillAborted`` when a phase cannot continue (its reason is a finding).
    """
    channel_id, ts = _post(builder, client, path=path, canary=canary, delivery=delivery)
    try:
        _read_back(
            builder,
            client,
            path=path,
            canary=canary,
            delivery=delivery,
            channel_id=channel_id,
            ts=ts,
            interval=interval,
        )
    finally:
        # a canary that was posted is tidied even when the read-back failed: it must not linger looking real
        _cleanup(builder, client, path=path, canary=canary, delivery=delivery, channel_id=channel_id, ts=ts)
