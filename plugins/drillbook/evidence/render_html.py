"""Server-rendered HTML for the evidence pages and the pack's static report: data in, HTML string out.

Rules this module enforces:
- every value that came from the ledger or the catalogue (drill names, targets, finding
  messages, run ids, environment strings) passes through ``esc`` (``html.escape`` with
  quotes) before it reaches the page; markup is only ever built from literals here;
- no JavaScript is needed to read any page: charts are inline SVG drawn on the server,
  so a page prints on paper and a static copy (the evidence pack) reads offline;
- no import of FastAPI, Airflow or psycopg: the web app and the pack both call these
  functions with plain data (dicts, lists, numbers), so one rendering serves both;
- links are built with ``href(base, path, **query)``; query values are URL-encoded.

API (for the pack): ``document(title, body, nav=None, base="")`` wraps a body into a full
page; ``table(headers, rows)`` with cells already rendered (use ``esc`` or the helpers);
``verdict_badge``, ``line_chart``, ``bar_chart``, ``waterfall`` for the pieces.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

NAV = (
    ("controls", "Controls"),
    ("coverage", "Coverage"),
    ("history", "Drill history"),
    ("trends", "Trends"),
    ("ledger", "Ledger status"),
)

VERDICT_WORDS = {
    "PASS": "Passed: every check ran and found nothing at or above high severity.",
    "FAIL": "Failed: the drill ran and found a problem (a finding of high or critical severity).",
    "ERROR": "Could not verify: the drill could not run its checks (unreachable, crashed or misconfigured). "
    "This is not a pass.",
    "SKIPPED": "Skipped: the drill is not configured, so nothing was checked. This is not a pass.",
}
_VERDICT_COLOUR = {"PASS": "#1a7f37", "FAIL": "#cf222e", "ERROR": "#bc4c00", "SKIPPED": "#6e7781"}

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1f2328;background:#fff}
header{background:#f6f8fa;border-bottom:1px solid #d0d7de;padding:8px 16px}
header a{margin-right:14px;color:#0969da;text-decoration:none}header a.on{font-weight:700;color:#1f2328}
main{padding:12px 16px;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 16px}th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f6f8fa}
.badge{color:#fff;border-radius:4px;padding:1px 6px;font-weight:600;font-size:12px}
.mono{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
form.filters label{margin-right:10px}.muted{color:#6e7781}.warn{color:#cf222e;font-weight:600}
@media print{header{display:none}}
"""


def esc(value: Any) -> str:
    """HTML-escape any value (None becomes an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


def href(base: str, path: str, **query: Any) -> str:
    """A link under ``base`` with URL-encoded query values (None and "" values are left out)."""
    clean = {k: v for k, v in query.items() if v not in (None, "")}
    url = f"{base.rstrip('/')}/{path.lstrip('/')}"
    return esc(url + ("?" + urlencode(clean) if clean else ""))


def link(url_escaped: str, text: Any) -> str:
    return f'<a href="{url_escaped}">{esc(text)}</a>'


def verdict_badge(verdict: str) -> str:
    colour = _VERDICT_COLOUR.get(verdict, "#6e7781")
    return f'<span class="badge" style="background:{colour}">{esc(verdict)}</span>'


def fmt_seconds(value: Any) -> str:
    if value is None:
        return "—"
    try:
        return f"{float(value):.1f} s"
    except (TypeError, ValueError):
        return esc(value)


def fmt_time(value: Any) -> str:
    if isinstance(value, datetime):
        return esc(value.strftime("%Y-%m-%d %H:%M:%S UTC"))
    return esc(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, empty: str = "nothing to show") -> str:
    """A table whose cells are already-rendered HTML (escape values with ``esc`` first)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="muted">{esc(empty)}</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def document(title: str, body: str, *, nav: str | None = None, base: str = "") -> str:
    """A complete HTML page; ``nav`` names the active entry of ``NAV`` (None: no navigation bar)."""
    bar = ""
    if nav is not None:
        links = "".join(
            f'<a href="{href(base, key)}"{" class=on" if key == nav else ""}>{esc(label)}</a>'
            for key, label in NAV
        )
        bar = f"<header><strong>drillbook evidence</strong> · {links}</header>"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{esc(title)} · drillbook</title><style>{_CSS}</style></head>"
        f"<body>{bar}<main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )


# -- charts (inline SVG) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One line on a chart: points are (x as a UNIX timestamp, y); ``objective`` draws a dashed line."""

    label: str
    points: Sequence[tuple[float, float]]
    objective: float | None = None


def _scale(lo: float, hi: float, size: float, pad: float) -> Any:
    span = (hi - lo) or 1.0
    return lambda v: pad + (v - lo) / span * (size - 2 * pad)


def line_chart(series: Series, *, width: int = 720, height: int = 220, unit: str = "s") -> str:
    """An SVG line chart of one series with its objective line; readable without JavaScript."""
    pts = [(float(x), float(y)) for x, y in series.points]
    title = f"<title>{esc(series.label)}</title>"
    if not pts:
        return (
            f'<svg class="chart" role="img" width="{width}" height="40" xmlns="http://www.w3.org/2000/svg">'
            f'{title}<text x="4" y="24">no measurements for {esc(series.label)} in this period</text></svg>'
        )
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts] + ([series.objective] if series.objective is not None else [])
    y_hi = max(ys) * 1.1 or 1.0
    sx = _scale(min(xs), max(xs), width, 48)
    sy = _scale(0.0, y_hi, height, 24)

    def y(v: float) -> float:
        return height - sy(v)

    poly = " ".join(f"{sx(px):.1f},{y(py):.1f}" for px, py in pts)
    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        title,
        f'<line x1="48" y1="{y(0):.1f}" x2="{width - 48}" y2="{y(0):.1f}" stroke="#8c959f"/>',
        f'<text x="2" y="{y(y_hi) + 10:.1f}" font-size="11">{y_hi:.0f} {esc(unit)}</text>',
        f'<text x="2" y="{y(0):.1f}" font-size="11">0</text>',
        f'<polyline fill="none" stroke="#0969da" stroke-width="1.5" points="{poly}"/>',
    ]
    if len(pts) <= 120:  # few points: mark each, so a single day still shows
        parts += [f'<circle cx="{sx(px):.1f}" cy="{y(py):.1f}" r="3" fill="#0969da"/>' for px, py in pts]
    if series.objective is not None:
        oy = y(series.objective)
        parts.append(
            f'<line class="objective" x1="48" y1="{oy:.1f}" x2="{width - 48}" y2="{oy:.1f}" '
            'stroke="#cf222e" stroke-dasharray="6 4"/>'
        )
        parts.append(
            f'<text x="{width - 200}" y="{oy - 4:.1f}" font-size="11" fill="#cf222e">'
            f"objective {series.objective:g} {esc(unit)}</text>"
        )
    first, last = datetime.fromtimestamp(min(xs)), datetime.fromtimestamp(max(xs))
    parts.append(f'<text x="48" y="{height - 4}" font-size="11">{esc(first.strftime("%Y-%m-%d"))}</text>')
    parts.append(
        f'<text x="{width - 120}" y="{height - 4}" font-size="11">{esc(last.strftime("%Y-%m-%d"))}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    bars: Sequence[tuple[str, float]], *, width: int = 720, height: int = 200, unit: str = "%"
) -> str:
    """An SVG bar chart (label, value 0..100), e.g. the pass rate per month."""
    if not bars:
        return (
            f'<svg class="chart" role="img" width="{width}" height="40" xmlns="http://www.w3.org/2000/svg">'
            '<text x="4" y="24">no runs in this period</text></svg>'
        )
    step = (width - 20) / len(bars)
    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"><title>pass rate</title>'
    ]
    for i, (label, value) in enumerate(bars):
        h = max(0.0, min(100.0, float(value))) / 100 * (height - 40)
        x = 10 + i * step
        parts.append(
            f'<rect x="{x + 2:.1f}" y="{height - 20 - h:.1f}" width="{max(step - 4, 1):.1f}" '
            f'height="{h:.1f}" fill="#1a7f37"><title>{esc(label)}: {value:.1f}{esc(unit)}</title></rect>'
        )
        parts.append(f'<text x="{x + 2:.1f}" y="{height - 6}" font-size="10">{esc(label)}</text>')
        parts.append(
            f'<text x="{x + 2:.1f}" y="{height - 24 - h:.1f}" font-size="10">{value:.0f}{esc(unit)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def waterfall(phases: Sequence[dict[str, Any]], *, width: int = 720) -> str:
    """Phases as an SVG waterfall: one bar per phase, offset by the phases before it, with seconds."""
    total = sum(float(p.get("seconds") or 0) for p in phases) or 1.0
    row, label_w = 22, 160
    height = row * max(len(phases), 1) + 8
    parts = [
        f'<svg class="chart waterfall" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"><title>phases</title>'
    ]
    start = 0.0
    for i, phase in enumerate(phases):
        secs = float(phase.get("seconds") or 0)
        x = label_w + start / total * (width - label_w - 80)
        w = max(secs / total * (width - label_w - 80), 1.0)
        colour = (
            "#1a7f37"
            if phase.get("status") == "ok"
            else "#cf222e"
            if phase.get("status") == "failed"
            else "#8c959f"
        )
        y = 4 + i * row
        parts.append(
            f'<text x="2" y="{y + 14}" font-size="12">{esc(phase.get("name"))} ({esc(phase.get("status"))})</text>'
        )
        parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 6}" fill="{colour}"/>')
        parts.append(f'<text x="{x + w + 4:.1f}" y="{y + 14}" font-size="12">{secs:.2f} s</text>')
        start += secs
    parts.append("</svg>")
    return "".join(parts)
