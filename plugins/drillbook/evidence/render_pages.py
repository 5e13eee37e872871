"""The evidence pages' bodies: query results in, escaped HTML out (pure; see render_html for the rules).

Every function takes plain rows (dicts as the ledger queries return them) and ``base``, the
URL prefix the pages live under, and returns a whole document. Ledger values are untrusted:
they reach the page only through ``esc``/``link``/``href``.

History, record, trends and ledger are here; Controls and Coverage in ``render_control_pages``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from drillbook.drills import registry
from drillbook.evidence.render_html import (
    VERDICT_WORDS,
    Series,
    bar_chart,
    document,
    esc,
    fmt_seconds,
    fmt_time,
    href,
    line_chart,
    link,
    table,
    verdict_badge,
    waterfall,
)

VERDICTS = ("PASS", "FAIL", "ERROR", "SKIPPED")


def _select(name: str, options: Sequence[str], current: str | None) -> str:
    opts = ['<option value="">any</option>'] + [
        f'<option value="{esc(o)}"{" selected" if o == current else ""}>{esc(o)}</option>' for o in options
    ]
    return f'<label>{esc(name)} <select name="{esc(name)}">{"".join(opts)}</select></label>'


def text_input(name: str, current: str | None, placeholder: str = "") -> str:
    """A labelled text field of a page's filter form."""
    return (
        f'<label>{esc(name)} <input name="{esc(name)}" value="{esc(current or "")}" '
        f'placeholder="{esc(placeholder)}" size="14"></label>'
    )


def pack_link(
    base: str, control: str, since: str | None, until: str | None, text: str = "Download evidence pack"
) -> str:
    """A plain link to ``/pack`` (a GET answered with the zip as an attachment: works without JavaScript).

    No ``download`` attribute: the answer's Content-Disposition saves the zip, and a 400 page
    (e.g. a period over the limit) is shown instead of being saved as if it were the pack."""
    return f'<a class="pack" href="{href(base, "pack", control=control, since=since, until=until)}">{esc(text)}</a>'


def history_page(
    rows: Sequence[dict[str, Any]],
    *,
    filters: dict[str, str | None],
    next_before: int | None,
    drills: Sequence[str],
    base: str,
    pack_note: str = "",
) -> str:
    """Drill history: the filter form, one row per record (newest first) linking to it, and the next-page link.

    With a control filter and ``pack_note`` (the pages can build packs), a link downloads that control's pack."""
    form = (
        f'<form class="filters" method="get" action="{href(base, "history")}">'
        + _select("kind", registry.names(), filters.get("kind"))
        + _select("drill", drills, filters.get("drill"))
        + text_input("control", filters.get("control"), "SOC2:A1.2")
        + _select("verdict", VERDICTS, filters.get("verdict"))
        + text_input("since", filters.get("since"), "2026-01-01")
        + text_input("until", filters.get("until"), "2026-03-31")
        + '<button type="submit">Filter</button></form>'
    )
    control = filters.get("control")
    if control and pack_note:
        form += (
            f"<p>{pack_link(base, control, filters.get('since'), filters.get('until'), f'Download evidence pack of {control}')}"
            f" {'for this period' if filters.get('since') else 'for the last 31 days (set since to choose)'}."
            f" {esc(pack_note)}</p>"
        )
    body_rows = [
        (
            link(href(base, f"record/{r['seq']}"), r["seq"]),
            fmt_time(r["recorded_at"]),
            esc(r["record_type"]),
            esc(r["kind"]),
            esc(r["drill"]),
            esc(r["target"]),
            verdict_badge(r["verdict"]),
            esc(", ".join(r["controls"] or [])),
            f'<span class="mono">{esc(r["run_id"])}</span>',
        )
        for r in rows
    ]
    more = ""
    if next_before is not None:
        more = (
            f"<p>{link(href(base, 'history', **{**filters, 'before': next_before}), 'older records →')}</p>"
        )
    return document(
        "Drill history",
        form
        + table(
            ("seq", "recorded (UTC)", "type", "kind", "drill", "target", "verdict", "controls", "run id"),
            body_rows,
            empty="no record matches these filters",
        )
        + more,
        nav="history",
        base=base,
    )


def _env_changes(now: dict[str, Any], before: dict[str, Any] | None) -> str:
    if before is None:
        return "<p class=muted>no earlier green run of this drill to compare with</p>"
    keys = sorted(set(now) | set(before))
    changed = [
        (esc(k), esc(before.get(k, "—")), esc(now.get(k, "—"))) for k in keys if now.get(k) != before.get(k)
    ]
    if not changed:
        return "<p>nothing changed in the environment since the last green run</p>"
    return table(("what", "at the last green run", "in this run"), changed)


def record_page(
    rec: dict[str, Any], *, last_green: dict[str, Any] | None, base: str, airflow_base: str = ""
) -> str:
    """One record: verdict in words, phase waterfall, findings, measurements vs objectives, environment, chain."""
    result = rec["result"] if isinstance(rec["result"], dict) else {}
    verdict = rec["verdict"]
    parts = [
        f"<p>{verdict_badge(verdict)} {esc(VERDICT_WORDS.get(verdict, verdict))}</p>",
        table(
            ("drill", "kind", "target", "controls", "recorded (UTC)", "record type"),
            [
                (
                    esc(rec["drill"]),
                    esc(rec["kind"]),
                    esc(rec["target"]),
                    esc(", ".join(rec["controls"] or [])),
                    fmt_time(rec["recorded_at"]),
                    esc(rec["record_type"]),
                )
            ],
        ),
        "<h2>Phases</h2>",
        waterfall(result.get("phases") or []),
        "<h2>Findings</h2>",
        table(
            ("code", "severity", "message", "fix hint", "subject"),
            [
                (
                    f'<span class="mono">{esc(f.get("code"))}</span>',
                    esc(f.get("severity")),
                    esc(f.get("message")),
                    esc(f.get("hint")),
                    esc(f.get("subject")),
                )
                for f in result.get("findings") or []
            ],
            empty="no findings",
        ),
    ]
    meas = result.get("measurements") or {}
    objectives = result.get("objectives") or {}
    rows = []
    for key in ("rto_seconds", "rpo_seconds"):
        value, goal = meas.get(key), objectives.get(key)
        met = (
            "—"
            if value is None or goal is None
            else ("met" if float(value) <= float(goal) else '<span class="warn">missed</span>')
        )
        rows.append((esc(key.replace("_seconds", "").upper()), fmt_seconds(value), fmt_seconds(goal), met))
    for name, count in (meas.get("counts") or {}).items():
        rows.append((esc(name), esc(count), "—", "—"))
    parts += ["<h2>Measurements vs objectives</h2>", table(("measure", "measured", "objective", ""), rows)]
    env = result.get("environment") or {}
    green_link = ""
    green_env = None
    if last_green is not None:
        green_seq = last_green["seq"]
        green_link = f" ({link(href(base, f'record/{green_seq}'), f'seq {green_seq}')})"
        green_result = last_green["result"] if isinstance(last_green["result"], dict) else {}
        green_env = green_result.get("environment") or {}
    parts += [
        "<h2>Environment</h2>",
        table(("what", "value"), [(esc(k), esc(v)) for k, v in sorted(env.items())]),
        f"<h3>Changed since the last green run of this drill{green_link}</h3>",
        _env_changes(env, green_env),
    ]
    dag_run = f"{airflow_base}/dags/{quote(rec['dag_id'], safe='')}/runs/{quote(rec['run_id'], safe='')}"
    parts += [
        "<h2>Airflow</h2>",
        f'<p><a target="_top" href="{esc(dag_run)}">DAG run {esc(rec["dag_id"])} / {esc(rec["run_id"])}</a> · '
        f'<a target="_top" href="{esc(dag_run + "/tasks/" + quote(rec["task_id"], safe=""))}">task log '
        f"({esc(rec['task_id'])}, try {esc(rec['try_number'])})</a></p>",
        "<h2>Chain</h2>",
        table(
            ("seq", "prev_hash", "hash"),
            [
                (
                    esc(rec["seq"]),
                    f'<span class="mono">{esc(rec["prev_hash"])}</span>',
                    f'<span class="mono">{esc(rec["hash"])}</span>',
                )
            ],
        ),
    ]
    return document(f"Record {rec['seq']}", "".join(parts), nav="history", base=base)


def trends_page(
    days: Sequence[dict[str, Any]],
    months: Sequence[tuple[str, float, int]],
    *,
    drill: str | None,
    kind: str | None,
    drills: Sequence[str],
    since: str,
    until: str,
    base: str,
) -> str:
    """RTO and RPO per day of one drill with the objective line, and its pass rate per month (SVG)."""
    form = (
        f'<form class="filters" method="get" action="{href(base, "trends")}">'
        + _select("drill", drills, drill)
        + text_input("since", since)
        + text_input("until", until)
        + '<button type="submit">Show</button></form>'
    )
    if drill is None:
        return document("Trends", form + "<p>the ledger holds no drill yet</p>", nav="trends", base=base)

    def series(key: str, label: str) -> Series:
        pts = [(row["day"].timestamp(), float(row[key])) for row in days if row[key] is not None]
        goals = [row[f"{key}_objective"] for row in days if row[f"{key}_objective"] is not None]
        return Series(label, pts, float(goals[-1]) if goals else None)

    body = [
        form,
        f"<h2>{esc(drill)} ({esc(kind)})</h2>",
        "<h3>RTO per day (mean)</h3>",
        line_chart(series("rto", f"RTO of {drill}")),
        "<h3>RPO per day (mean)</h3>",
        line_chart(series("rpo", f"RPO of {drill}")),
        "<h3>Pass rate per month</h3>",
        bar_chart([(m, rate) for m, rate, _n in months]),
        table(("month", "runs", "pass rate"), [(esc(m), esc(n), f"{rate:.1f} %") for m, rate, n in months]),
    ]
    return document("Trends", "".join(body), nav="trends", base=base)


def _verify_line(v: dict[str, Any], *, base: str) -> str:
    cls = "" if v["ok"] else ' class="warn"'
    who = f" by {esc(v['by'])}" if v.get("by") else ""
    link = href(base, f"record/{v['seq']}") if v.get("seq") else ""
    where = f' (<a href="{link}">record {esc(v["seq"])}</a>)' if link else ""
    return f"<p{cls}>{esc(v['state'])} at {fmt_time(v['at'])}{who}{where}: {esc(v['message'])}</p>"


def ledger_page(status: dict[str, Any], *, verifies: dict[str, Any], csrf: str, base: str) -> str:
    """Head hash, checkpoints, the last verifies recorded in the ledger, and the verify button (a POST form).

    ``verifies``: ``page`` and ``digest`` (``drillbook.web.verify_record.last_verifies``, read from the
    ledger) and ``just_ran``: an outcome shown once because it could not be recorded (with its ``note``).
    """
    head = status["head"]
    parts = [
        "<h2>Head</h2>",
        table(
            ("seq", "recorded (UTC)", "hash"),
            [
                (
                    esc(head["seq"]),
                    fmt_time(head["recorded_at"]),
                    f'<span class="mono">{esc(head["hash"])}</span>',
                )
            ]
            if head
            else [],
            empty="the ledger is empty",
        ),
    ]
    parts += [
        "<h2>Checkpoints</h2>",
        table(
            ("seq", "hash", "signed at", "signature", "source"),
            [
                (
                    esc(c["seq"]),
                    f'<span class="mono">{esc(c["hash"])}</span>',
                    esc(c["signed_at"]),
                    esc(f"signed, key {c['key_id']}")
                    if c["signed"]
                    else '<span class="warn">UNSIGNED</span>',
                    esc(c["source"]),
                )
                for c in status["checkpoints"]
            ],
            empty="no checkpoint taken yet (run `drillbook evidence checkpoint`)",
        ),
    ]
    just_ran = verifies.get("just_ran")
    if just_ran is not None:
        parts.append("<h2>Verify just run</h2>" + _verify_line(just_ran, base=base))
        if just_ran.get("note"):
            parts.append(f'<p class="warn">{esc(just_ran["note"])}</p>')
    parts.append("<h2>Last verify</h2>")
    page, digest = verifies.get("page"), verifies.get("digest")
    parts.append(
        "<h3>from these pages (recorded in the ledger)</h3>"
        + (
            _verify_line(page, base=base)
            if page
            else "<p>none recorded: the button records its outcome only through the "
            "drillbook_ledger_writer connection</p>"
        )
    )
    parts.append(
        "<h3>by the digest</h3>"
        + (_verify_line(digest, base=base) if digest else "<p>no digest has run against this ledger yet</p>")
    )
    parts.append(
        f'<form method="post" action="{href(base, "ledger/verify")}">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        '<button type="submit">Verify the chain now</button></form>'
    )
    return document("Ledger status", "".join(parts), nav="ledger", base=base)


def error_page(title: str, message: str, *, base: str) -> str:
    return document(title, f'<p class="warn">{esc(message)}</p>', nav="history", base=base)
