"""Render the periodic scorecard for the digest channel as one Slack message (pure, no network).

Rules this module enforces:
- the ledger's state comes first: a ledger that does not verify, or was not verified,
  leads the title in capitals, and an unverifiable scorecard says nothing in it is VERIFIED;
- problems sort first (at risk, exceptions, not run, unverifiable), so they survive
  ``blocks.fit``'s cut to Slack's limits; missed and FAIL/ERROR runs are always named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drillbook.catalogue.common import format_duration
from drillbook.notify.blocks import (
    MAX_FALLBACK_TEXT,
    MAX_SECTION_TEXT,
    Message,
    clip,
    context,
    divider,
    esc,
    fit,
    header,
    section,
)

if TYPE_CHECKING:
    from drillbook.reporting.scorecard import Scorecard

STATUS_EMOJI = {
    "VERIFIED": ":white_check_mark:",
    "AT RISK": ":red_circle:",
    "EXCEPTIONS": ":large_orange_circle:",
    "NOT RUN": ":warning:",
    "UNVERIFIABLE": ":rotating_light:",
    "NOT DUE": ":white_circle:",
}
# problems first: they survive a cut to 50 blocks
_STATUS_ORDER = {"AT RISK": 0, "EXCEPTIONS": 1, "NOT RUN": 2, "UNVERIFIABLE": 3, "NOT DUE": 4, "VERIFIED": 5}


def _pack(lines: list[str], *, heading: str) -> list[Any]:
    """Lines into as few sections as fit 3000 characters each (a line never splits)."""
    out: list[Any] = []
    chunk = heading
    for line in lines:
        line = clip(line, MAX_SECTION_TEXT - len(heading) - 1)
        if len(chunk) + 1 + len(line) > MAX_SECTION_TEXT:
            out.append(section(chunk))
            chunk = heading
        chunk += "\n" + line
    out.append(section(chunk))
    return out


def _exceptions(missed: int, failed: int) -> str:
    """The exceptions behind a status, in words: missed runs and FAIL/ERROR runs are never hidden."""
    parts = ([f"{missed} missed"] if missed else []) + ([f"{failed} FAIL/ERROR"] if failed else [])
    return f" ({', '.join(parts)})" if parts else ""


def render_digest(card: Scorecard) -> Message:
    """The periodic scorecard for the digest channel: ledger status first, then controls, then drills."""
    period = f"{card.start:%Y-%m-%d %H:%M} → {card.end:%Y-%m-%d %H:%M} UTC"
    counts = {s: sum(1 for d in card.drills if d.status == s) for s in _STATUS_ORDER}
    ledger = card.ledger_summary if card.ledger_ok is not False else f"*{card.ledger_summary}*"
    unverifiable = f", {counts['UNVERIFIABLE']} unverifiable" if card.unverifiable else ""
    summary = (
        f"*{len(card.drills)} drills*: {counts['VERIFIED']} verified, {counts['EXCEPTIONS']} with exceptions, "
        f"{counts['AT RISK']} at risk, {counts['NOT RUN']} not run{unverifiable}.\n"
        f"{':white_check_mark:' if card.ledger_ok else ':rotating_light:'} {esc(ledger)}"
    )
    if card.unverifiable:
        summary += f"\n*Nothing in this scorecard is VERIFIED: {esc(card.unverifiable)}.* Run `drillbook evidence verify`."

    def shown(status: str) -> str:
        return f"{status} — {card.unverifiable}" if status == "UNVERIFIABLE" and card.unverifiable else status

    control_lines = [
        f"{STATUS_EMOJI[c.status]} *{esc(c.control)}*: {esc(shown(c.status))} · {c.runs}/{c.expected} runs, {c.passes} passed"
        f"{_exceptions(c.missed, c.failed)} · "
        f"{esc(', '.join(c.drills))}"
        for c in sorted(card.controls, key=lambda c: _STATUS_ORDER[c.status])
    ]
    drill_lines = []
    for d in sorted(card.drills, key=lambda d: _STATUS_ORDER[d.status]):
        rate = f"{d.pass_rate:.0%}" if d.pass_rate is not None else "n/a"
        parts = [
            f"{STATUS_EMOJI[d.status]} *{esc(d.drill)}* ({esc(d.kind)}): {esc(shown(d.status))} · {d.runs}/{d.expected} runs"
            f"{_exceptions(d.missed, d.failed)} · pass rate {rate}"
        ]
        for label, pair, objective in (("RTO", d.rto, d.rto_objective), ("RPO", d.rpo, d.rpo_objective)):
            if pair is not None:
                against = f" vs {format_duration(objective)}" if objective is not None else ""
                parts.append(
                    f"{label} worst {format_duration(pair[0])} / median {format_duration(pair[1])}{against}"
                )
        if d.open_findings:
            parts.append("open: " + esc(", ".join(d.open_findings)))
        drill_lines.append(" · ".join(parts))
    title = f":bar_chart: drillbook {card.title}"
    if card.ledger_ok is False:
        title = f":rotating_light: LEDGER DOES NOT VERIFY — drillbook {card.title}"
    elif card.ledger_ok is None:
        title = f":warning: LEDGER NOT VERIFIED — drillbook {card.title}"
    blocks: list[Any] = [header(title), section(f"*Period:* {period}\n{summary}")]
    if control_lines:
        blocks += [divider(), *_pack(control_lines, heading="*By control*")]
    if drill_lines:
        blocks += [divider(), *_pack(drill_lines, heading="*By drill*")]
    blocks.append(
        context(
            "Full history: `drillbook evidence list --since "
            + f"{card.start:%Y-%m-%d}`"
            + " · verify: `drillbook evidence verify`"
        )
    )
    text = (
        f"drillbook {card.title} {period}: {counts['VERIFIED']} verified, {counts['EXCEPTIONS']} with exceptions, "
        f"{counts['AT RISK']} at risk, "
        f"{counts['NOT RUN']} not run{unverifiable}; {esc(card.ledger_summary)}"
    )
    if card.ledger_ok is False:
        text = f"LEDGER DOES NOT VERIFY — {text}"
    return Message(
        text=clip(text, MAX_FALLBACK_TEXT),
        blocks=fit(blocks, overflow_note="run `drillbook evidence list` for the rest"),
    )
