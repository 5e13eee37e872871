"""The Controls and Coverage pages' bodies: each control and each thing in scope, against its evidence.

Pure and escaped like every page (``drillbook.evidence.render_pages`` has the rules); a control or
a thing in scope short of passing evidence in the period is shown in the ``warn`` style.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from drillbook.evidence.render_html import document, esc, fmt_time, href, link, table, verdict_badge
from drillbook.evidence.render_pages import pack_link, text_input


def controls_page(rows: Sequence[dict[str, Any]], *, since: str, until: str, base: str) -> str:
    """One row per control id: runs, passes, exceptions (each with its date), newest result, status in words."""
    out = []
    for r in rows:
        exceptions = r["exceptions"] or []
        listed = "<br>".join(
            f"{link(href(base, f'record/{e[0]}'), e[1])} {esc(e[2])} {esc(e[3])}" for e in exceptions
        )
        if r["exception_count"] > len(exceptions):
            listed += f"<br>… and {r['exception_count'] - len(exceptions)} more"
        if r["exception_count"]:
            status = f'<span class="warn">{r["exception_count"]} exception(s) in {r["runs"]} runs</span>'
        else:
            status = f"every one of {r['runs']} runs passed"
        out.append(
            (
                link(href(base, "history", control=r["control"], since=since, until=until), r["control"]),
                esc(", ".join(sorted(r["drills"] or []))),
                esc(r["runs"]),
                esc(r["passes"]),
                listed or "none",
                verdict_badge(r["newest_verdict"] or "") + " " + fmt_time(r["newest_at"]),
                status,
            )
        )
    form = (
        f'<form class="filters" method="get" action="{href(base, "controls")}">'
        + text_input("since", since)
        + text_input("until", until)
        + '<button type="submit">Show</button></form>'
    )
    return document(
        "Controls",
        form
        + table(
            ("control", "drills", "runs", "passes", "exceptions (FAIL/ERROR)", "newest result", "status"),
            out,
            empty="no drill record names a control in this period",
        ),
        nav="controls",
        base=base,
    )


def control_rows_page(
    rows: Sequence[Any], *, since: str, until: str, base: str, shown: int = 20, pack_note: str = ""
) -> str:
    """Controls from the catalogue's population (``drillbook.evidence.controls.ControlRow``): every exception dated.

    Each row links to its evidence pack for the period shown; ``pack_note`` says whether packs are signed."""
    out = []
    for r in rows:
        items = []
        for e in list(reversed(r.exceptions))[:shown]:  # newest first: the latest failures matter most
            when = esc(f"{e.at:%Y-%m-%d %H:%M}")
            when = (
                link(href(base, "record/" + str(e.seq)), f"{e.at:%Y-%m-%d %H:%M}")
                if e.seq is not None
                else when
            )
            items.append(f"{when} {esc(e.what)} {esc(e.drill)}")
        total = r.missed + r.failed  # every exception is a missed occurrence or a FAIL/ERROR run
        if total > min(shown, len(r.exceptions)):  # the SQL population hands over only the newest ones
            items.append(
                f"… and {total - min(shown, len(r.exceptions))} more "
                + link(href(base, "history", control=r.control, since=since, until=until), "(history)")
            )
        newest = (verdict_badge(r.newest.verdict) + " " + fmt_time(r.newest.last_at)) if r.newest else "—"
        warn = ' class="warn"' if r.status != "VERIFIED" else ""
        out.append(
            (
                link(href(base, "history", control=r.control, since=since, until=until), r.control)
                + "<br>"
                + pack_link(base, r.control, since, until),
                f"<span{warn}>{esc(r.status)}</span><br>{esc(r.status_words)}",
                esc(r.expected),
                esc(r.covered),
                esc(r.runs),
                esc(r.passes),
                "<br>".join(items) or "none",
                newest,
                esc(", ".join(r.drills)),
            )
        )
    form = (
        f'<form class="filters" method="get" action="{href(base, "controls")}">'
        + text_input("since", since)
        + text_input("until", until)
        + '<button type="submit">Show</button></form>'
    )
    if pack_note:
        form += f'<p class="pack-note">{esc(pack_note)}</p>'
    return document(
        "Controls",
        form
        + table(
            (
                "control",
                "status",
                "expected",
                "ran",
                "runs",
                "passes",
                "exceptions (missed, FAIL, ERROR)",
                "newest",
                "drills",
            ),
            out,
            empty="the catalogue maps no drill to a control",
        ),
        nav="controls",
        base=base,
    )


def scope_page(items: Sequence[Any], *, since: str, until: str, base: str) -> str:
    """Coverage from the catalogue's scope (``drillbook.evidence.coverage.ScopeItem``), uncovered first."""
    out = [
        (
            ('<span class="warn">NONE</span>' if not i.covered else "PASSING"),
            esc(i.what),
            esc(i.name),
            link(href(base, "history", drill=i.drill, since=since, until=until), i.drill),
            fmt_time(i.last_pass) if i.last_pass else "—",
            esc(i.last_result or "never ran"),
        )
        for i in items
    ]
    form = (
        f'<form class="filters" method="get" action="{href(base, "coverage")}">'
        + text_input("since", since)
        + text_input("until", until)
        + '<button type="submit">Show</button></form>'
    )
    return document(
        "Coverage",
        form
        + table(
            ("passing evidence", "in scope", "name", "drill", "last pass", "newest result"),
            out,
            empty="nothing in scope",
        ),
        nav="coverage",
        base=base,
    )


def coverage_page(
    rows: Sequence[dict[str, Any]], *, since: str, until: str, scope_from: str, base: str
) -> str:
    """What is in scope against what was drilled: anything without passing evidence in the period first."""
    out = []
    for r in rows:
        newest, green = r["newest"], r["green"]
        if green:
            status = (
                "passing evidence: "
                + link(href(base, "record/" + str(green["seq"])), green["seq"])
                + " "
                + fmt_time(green["recorded_at"])
            )
        else:
            status = '<span class="warn">NO PASSING EVIDENCE in this period</span>'
        if newest:
            last = (
                verdict_badge(newest["verdict"])
                + " "
                + link(href(base, "record/" + str(newest["seq"])), newest["seq"])
            )
        else:
            last = '<span class="warn">never ran in this period</span>'
        out.append(
            (
                esc(r["kind"]),
                link(href(base, "history", drill=r["drill"], since=since, until=until), r["drill"]),
                esc(newest["target"]) if newest else "—",
                last,
                status,
            )
        )
    form = (
        f'<form class="filters" method="get" action="{href(base, "coverage")}">'
        + text_input("since", since)
        + text_input("until", until)
        + '<button type="submit">Show</button></form>'
    )
    return document(
        "Coverage",
        form
        + f"<p class=muted>in scope: {esc(scope_from)}</p>"
        + table(("kind", "drill", "target", "newest run", "evidence"), out, empty="nothing in scope"),
        nav="coverage",
        base=base,
    )
