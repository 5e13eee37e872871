"""Report ids in messages, and the channel-history check that keeps an ambiguous failure from paging twice.

Rules this module enforces:
- every top-level message drillbook posts carries a report id twice: in
  Slack message metadata (``event_type`` ``drillbook_report``, payload
  ``report_id``) and as a context line ``drillbook report <id>`` (when the
  message has room: at most 50 blocks), so either is enough to find it;
- a report of a ledger record has a stable id, ``report_id_of`` (the
  record's seq and hash prefix): every attempt to deliver it -- the first, a
  task retry, the watchdog's re-send -- carries the same id, so one search
  of the channel tells whether any of them was stored;
- an *ambiguous* failure is one that happened after the request was sent:
  a timeout waiting for the answer, a connection reset or closed without an
  answer (``AMBIGUOUS``). Before posting again after one, the history of the
  channel is read from ``oldest`` (the first attempt's time, less
  ``CLOCK_SKEW``) and searched for the id; found means delivered;
- the search is bounded (``HISTORY_PAGES`` pages of 200 messages); a channel
  given by name is resolved to its ID (conversations.list, bounded too) when
  Slack wants an ID. When the history cannot be read the answer says why
  (``HistoryCheck.error``); the caller then does not post again blindly.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field, replace
from http.client import IncompleteRead, RemoteDisconnected
from typing import TYPE_CHECKING, Any

from drillbook.notify.blocks import MAX_BLOCKS, Message, context, esc
from drillbook.safety.redact import redact

if TYPE_CHECKING:
    from drillbook.ledger.records import LedgerRecord

log = logging.getLogger(__name__)

REPORT_EVENT = "drillbook_report"
HISTORY_PAGES = 20  # 4,000 messages after the first attempt: a busy channel over days, still bounded
LIST_PAGES = 10  # conversations.list pages searched for a channel name
CLOCK_SKEW = (
    120.0  # seconds: our clock and Slack's may disagree; search a little earlier than the first attempt
)
AMBIGUOUS: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionResetError,
    RemoteDisconnected,
    IncompleteRead,
    BrokenPipeError,
)


def report_id_of(record: LedgerRecord) -> str:
    """The stable id of the report of a ledger record: the same on every attempt to deliver it."""
    return f"r{record.seq}-{record.hash[:12]}"


def with_marker(message: Message, report_id: str) -> dict[str, Any]:
    """chat.postMessage arguments carrying ``report_id``: metadata, and a context line when there is room."""
    blocks = list(message.blocks)
    if blocks and len(blocks) < MAX_BLOCKS:
        blocks.append(context(esc(f"drillbook report {report_id}")))
    return {
        "blocks": blocks,
        "metadata": {"event_type": REPORT_EVENT, "event_payload": {"report_id": report_id}},
    }


_ID = re.compile(r"\b(?:r\d+-[0-9a-f]{12}|msg-[0-9a-f]{16}|sum-[0-9a-f]{12})\b")


def ids_in(message: dict[str, Any]) -> set[str]:
    """Every report id a message from conversations.history carries (metadata, blocks, text; a summary lists many)."""
    found = set(_ID.findall(json.dumps([message.get("text"), message.get("blocks")], ensure_ascii=False)))
    payload = (message.get("metadata") or {}).get("event_payload") or {}
    if isinstance(payload.get("report_id"), str):
        found.add(payload["report_id"])
    return found


def carries(message: dict[str, Any], report_id: str) -> bool:
    """True when a message from conversations.history carries ``report_id``."""
    return report_id in ids_in(message)


@dataclass(frozen=True)
class HistoryCheck:
    """The outcome of a search: ``found`` (id -> ts); ``error`` when the history could not be read."""

    found: dict[str, str] = field(default_factory=dict)
    channel: str | None = None
    error: str | None = None
    transient: bool = (
        False  # the history could not be read because Slack is down or busy (not a missing scope)
    )
    ts: str | None = None  # find_report: the ts of the one id asked for


def find_report(sender: Any, *, channel: str, report_id: str, oldest: float) -> HistoryCheck:
    """Search ``channel``'s history since ``oldest`` (epoch seconds, less CLOCK_SKEW) for ``report_id``."""
    check = find_reports(sender, channel=channel, report_ids={report_id}, oldest=oldest)
    return replace(check, ts=check.found.get(report_id))


def find_reports(sender: Any, *, channel: str, report_ids: set[str], oldest: float) -> HistoryCheck:
    """Search ``channel``'s history since ``oldest`` for any of ``report_ids``; stops early when all are found."""
    from slack_sdk.errors import SlackApiError, SlackClientError

    client = sender.client
    cid = sender._channel_ids.get(channel, channel)
    resolved = cid != channel
    cursor: str | None = None
    pages = 0
    found: dict[str, str] = {}
    while pages < HISTORY_PAGES:
        try:
            answer = client.conversations_history(
                channel=cid,
                oldest=f"{max(0.0, oldest - CLOCK_SKEW):.6f}",
                limit=200,
                include_all_metadata=True,
                cursor=cursor,
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error")) if exc.response is not None else "unknown"
            status = int(getattr(exc.response, "status_code", 0) or 0)
            if error == "channel_not_found" and not resolved:
                resolved = True
                named = channel_id_of(client, channel)
                if named is not None:
                    sender._channel_ids[channel] = cid = named
                    continue
            return HistoryCheck(
                found=found,
                error=f"conversations.history: HTTP {status}, error {error!r}",
                transient=status == 429 or status >= 500,
            )
        except (SlackClientError, OSError) as exc:
            return HistoryCheck(
                found=found,
                error=redact(f"conversations.history: {type(exc).__name__}: {exc}"),
                transient=True,
            )
        pages += 1
        for message in answer.get("messages") or []:
            for report_id in ids_in(message) & report_ids:
                found.setdefault(report_id, str(message.get("ts")))
        if len(found) == len(report_ids):
            return HistoryCheck(found=found, channel=cid)
        cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
        if not answer.get("has_more") or not cursor:
            return HistoryCheck(found=found, channel=cid)
    return HistoryCheck(
        found=found,
        error=f"conversations.history: more than {HISTORY_PAGES * 200} messages since the first attempt",
    )


def channel_id_of(client: Any, channel: str) -> str | None:
    """The ID of a channel given as ``#name`` (conversations.list, at most LIST_PAGES pages), or None."""
    from slack_sdk.errors import SlackClientError

    name = channel.lstrip("#")
    cursor: str | None = None
    for _ in range(LIST_PAGES):
        try:
            answer = client.conversations_list(
                types="public_channel,private_channel", exclude_archived=True, limit=200, cursor=cursor
            )
        except (SlackClientError, OSError) as exc:
            log.warning(
                "could not list Slack channels to find %s: %s",
                channel,
                redact(f"{type(exc).__name__}: {exc}"),
            )
            return None
        for item in answer.get("channels") or []:
            if item.get("name") == name:
                return str(item.get("id"))
        cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            return None
    return None
