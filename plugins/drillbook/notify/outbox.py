"""The local outbox: where reports go when no Slack connection is configured.

Rules this module enforces:
- one JSON object per line, appended, in ``$DRILLBOOK_OUTBOX`` (default
  ``var/outbox.jsonl`` under the current directory); a message is never
  silently dropped: it lands in the outbox *and* the task log;
- an outbox delivery says ``delivered=False``: nobody was told, and the
  notifier records that in the ledger (``NOTIFY_NOT_CONFIGURED``);
- ``render_outbox_text`` turns the outbox back into the messages as a person
  would read them (the end of ``make demo``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drillbook.notify.blocks import Message, as_text
from drillbook.notify.slack import Delivery
from drillbook.safety.redact import redact, redact_obj

log = logging.getLogger(__name__)

DEFAULT_OUTBOX = Path("var") / "outbox.jsonl"
_lock = threading.Lock()


def outbox_path(path: str | os.PathLike[str]) -> Path:
    """The outbox file ``path``: the entry point passes setting DRILLBOOK_OUTBOX (default var/outbox.jsonl)."""
    if not str(path):
        raise ValueError("no outbox path given: the entry point passes Settings.outbox")
    return Path(path)


class OutboxSender:
    """Append messages to the outbox file and the log, with the same interface as SlackSender."""

    transport = "outbox"

    def __init__(self, *, path: str | os.PathLike[str]):
        self.path = outbox_path(path)

    def post(
        self, *, channel: str, message: Message, thread_ts: str | None = None, report_id: str | None = None
    ) -> Delivery:
        ts = f"outbox-{uuid.uuid4().hex[:12]}"
        entry = {
            "report_id": report_id,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "channel": channel,
            "ts": ts,
            "thread_ts": thread_ts,
            "text": message.text,
            "blocks": message.blocks,
        }
        line = json.dumps(redact_obj(entry), ensure_ascii=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        where = f"thread {thread_ts} in {channel}" if thread_ts else channel
        log.warning(
            "no Slack connection: message for %s written to the outbox %s instead:\n%s",
            where,
            self.path,
            redact(as_text(message.blocks) or message.text),
        )
        return Delivery(
            transport="outbox",
            channel=channel,
            ts=ts,
            thread_ts=thread_ts,
            delivered=False,
            report_id=report_id,
        )


def read_outbox(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every entry of the outbox, oldest first; a missing file is an empty outbox."""
    file = outbox_path(path)
    if not file.exists():
        return []
    entries = []
    with file.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except ValueError:
                entries.append(
                    {"channel": "?", "text": f"(line {number} of {file} is not JSON)", "blocks": []}
                )
    return entries


def render_outbox_text(path: str | os.PathLike[str]) -> str:
    """The messages drillbook would have posted, as readable text (thread replies indented)."""
    entries = read_outbox(path)
    file = outbox_path(path)
    if not entries:
        return f"The outbox {file} is empty: no message would have been posted.\n"
    out = [
        f"{len(entries)} message{'s' if len(entries) != 1 else ''} drillbook would have posted (from {file}):",
        "",
    ]
    for entry in entries:
        body = as_text(entry.get("blocks") or []) or str(entry.get("text", ""))
        if entry.get("thread_ts"):
            out.append(f"  ↳ thread reply in {entry.get('channel')} at {entry.get('at', '?')}")
            out += ["    " + line for line in body.splitlines()]
        else:
            out.append(f"── to {entry.get('channel')} at {entry.get('at', '?')}")
            out += body.splitlines()
        out.append("")
    return "\n".join(out).rstrip() + "\n"
