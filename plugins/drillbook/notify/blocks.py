"""Block Kit building blocks that cannot produce a message Slack would reject.

Rules this module enforces:
- user data reaches Slack mrkdwn only through ``esc`` (``&``, ``<``, ``>``
  escaped), so a drill name or a finding message can never inject a mention or
  a link; our own link markup is built by ``link`` from an escaped label;
- every text is clipped to Slack's limit *after* escaping, and never inside an
  ``&amp;``-style entity, so a clipped text is still valid;
- ``fit`` is the last step of every renderer: at most 50 blocks, 3000
  characters per section text, 150 per header, 10 fields of at most 2000
  characters per section, 10 context elements; ``violations`` checks the same
  limits and the tests use it on every rendered message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_CONTEXT_TEXT = 2000
MAX_BUTTON_TEXT = 75
MAX_URL = 3000
MAX_FALLBACK_TEXT = 4000  # Slack accepts 40k; a notification preview shows far less

Block = dict[str, Any]

_ENTITY_TAIL = re.compile(r"&[a-z]{0,4}$")


@dataclass
class Message:
    """One Slack message: a notification fallback ``text`` and its ``blocks``."""

    text: str
    blocks: list[Block] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def esc(value: object) -> str:
    """Escape user data for Slack mrkdwn (``&``, ``<``, ``>``), nothing else."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unesc(value: str) -> str:
    """Undo ``esc`` (for plain-text renderings of a message)."""
    return value.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def clip(text: str, limit: int, *, more: str = "…") -> str:
    """Cut ``text`` to at most ``limit`` characters without splitting an escape entity."""
    if len(text) <= limit:
        return text
    head = text[: max(0, limit - len(more))]
    head = _ENTITY_TAIL.sub("", head)
    return head + more


def link(url: str | None, label: str) -> str:
    """A mrkdwn link ``<url|label>`` (label escaped); just the label without a URL."""
    if not url:
        return esc(label)
    safe_url = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    return f"<{safe_url}|{esc(label)}>"


def header(text: str) -> Block:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": clip(text, MAX_HEADER_TEXT), "emoji": True},
    }


def section(text: str) -> Block:
    """A mrkdwn section; ``text`` must already be escaped."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION_TEXT)}}


def fields(pairs: list[tuple[str, str]]) -> list[Block]:
    """Sections of ``*label*\\nvalue`` fields, 10 per section; values must already be escaped."""
    out: list[Block] = []
    items = [{"type": "mrkdwn", "text": clip(f"*{esc(k)}*\n{v}", MAX_FIELD_TEXT)} for k, v in pairs]
    for i in range(0, len(items), MAX_FIELDS):
        out.append({"type": "section", "fields": items[i : i + MAX_FIELDS]})
    return out


def context(*texts: str) -> Block:
    """A context line of mrkdwn elements; texts must already be escaped."""
    elements = [{"type": "mrkdwn", "text": clip(t, MAX_CONTEXT_TEXT)} for t in texts if t]
    return {"type": "context", "elements": elements[:MAX_CONTEXT_ELEMENTS]}


def divider() -> Block:
    return {"type": "divider"}


def buttons(items: list[tuple[str, str | None]]) -> Block | None:
    """An actions block of link buttons; items without a URL are left out."""
    elements = [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": clip(label, MAX_BUTTON_TEXT), "emoji": True},
            "url": url,
            "action_id": f"drillbook_link_{i}",
        }
        for i, (label, url) in enumerate(items)
        if url and len(url) <= MAX_URL
    ]
    return {"type": "actions", "elements": elements} if elements else None


def fit(
    blocks: Sequence[Block | None], *, overflow_note: str = "message shortened to fit Slack's limits"
) -> list[Block]:
    """Drop empty blocks and keep at most 50; the last one says what was left out."""
    clean = [b for b in blocks if b]
    if len(clean) <= MAX_BLOCKS:
        return clean
    dropped = len(clean) - (MAX_BLOCKS - 1)
    return [*clean[: MAX_BLOCKS - 1], context(esc(f"… {dropped} more blocks not shown: {overflow_note}"))]


def violations(message: Message | dict[str, Any]) -> list[str]:
    """Every Slack limit ``message`` breaks (empty when it is valid)."""
    payload = message.payload() if isinstance(message, Message) else message
    blocks = payload.get("blocks") or []
    problems: list[str] = []
    if not payload.get("text"):
        problems.append("no fallback text")
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"{len(blocks)} blocks > {MAX_BLOCKS}")
    for i, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "header":
            n = len(block["text"]["text"])
            if n > MAX_HEADER_TEXT or block["text"]["type"] != "plain_text":
                problems.append(f"block {i}: header of {n} chars")
        elif kind == "section":
            if "text" in block and len(block["text"]["text"]) > MAX_SECTION_TEXT:
                problems.append(f"block {i}: section text of {len(block['text']['text'])} chars")
            flds = block.get("fields") or []
            if len(flds) > MAX_FIELDS:
                problems.append(f"block {i}: {len(flds)} fields")
            problems += [
                f"block {i}: field of {len(f['text'])} chars" for f in flds if len(f["text"]) > MAX_FIELD_TEXT
            ]
            if "text" not in block and not flds:
                problems.append(f"block {i}: empty section")
        elif kind == "context":
            elements = block.get("elements") or []
            if not elements or len(elements) > MAX_CONTEXT_ELEMENTS:
                problems.append(f"block {i}: {len(elements)} context elements")
            problems += [
                f"block {i}: context text of {len(e['text'])} chars"
                for e in elements
                if len(e.get("text", "")) > MAX_CONTEXT_TEXT
            ]
        elif kind == "actions":
            for e in block.get("elements") or []:
                if len(e["text"]["text"]) > MAX_BUTTON_TEXT or len(e.get("url", "")) > MAX_URL:
                    problems.append(f"block {i}: button too long")
        elif kind != "divider":
            problems.append(f"block {i}: unexpected type {kind!r}")
    return problems


def as_text(blocks: list[Block]) -> str:
    """Render blocks as readable plain text (the outbox, the task log)."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            title = _EMOJI.sub("", block["text"]["text"])
            lines += [title, "=" * min(len(title), 72)]
        elif kind == "section":
            if "text" in block:
                lines.append(_plain(block["text"]["text"]))
            for f in block.get("fields") or []:
                label, _, value = _plain(f["text"]).partition("\n")
                lines.append(f"  {label}: {value.replace(chr(10), ' / ')}")
        elif kind == "context":
            lines.append("  " + " · ".join(_plain(e.get("text", "")) for e in block.get("elements") or []))
        elif kind == "actions":
            lines += [f"  [{e['text']['text']}] {e.get('url', '')}" for e in block.get("elements") or []]
        elif kind == "divider":
            lines.append("-" * 40)
    return "\n".join(lines)


_LINK = re.compile(r"<([^|>]+)\|([^>]+)>")


_EMOJI = re.compile(r":[a-z_]+:\s?")


def _plain(mrkdwn: str) -> str:
    """mrkdwn to plain text: links become ``label (url)``; emoji codes, bold, italics and code marks go."""
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", mrkdwn)
    text = _EMOJI.sub("", text).replace("```", "").replace("`", "")
    text = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"\1", text)
    text = re.sub(r"(?<![\w])_([^_\n]+)_(?![\w])", r"\1", text)
    return unesc(text)
