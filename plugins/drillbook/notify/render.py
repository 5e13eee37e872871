"""Render drill results, watchdog incidents and crashed tasks as Slack messages (pure, no network).

Rules this module enforces:
- the verdict is always spelled out in words ("FAIL: the drill ran and found a
  problem"); emoji only decorate it, so the status reads without colour;
- measured RTO/RPO are shown next to their objectives, formatted with
  ``catalogue.common.format_duration``;
- the main message carries the top findings (code, severity, message, fix hint)
  and says "and N more"; the thread reply carries every phase and the rest of
  the findings; both end in ``blocks.fit`` so Slack's limits always hold;
- every string that came from a drill, a target or an exception goes through
  ``blocks.esc`` (and was already redacted when the finding was built).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from drillbook.catalogue.common import format_duration
from drillbook.notify.blocks import (
    MAX_FALLBACK_TEXT,
    MAX_SECTION_TEXT,
    Message,
    buttons,
    clip,
    context,
    divider,
    esc,
    fields,
    fit,
    header,
    section,
)
from drillbook.result import DrillResult, Finding, Verdict
from drillbook.safety.redact import redact
from drillbook.web import record_url

if TYPE_CHECKING:
    from drillbook.ledger.store import LedgerRecord
    from drillbook.run.context import RunContext

VERDICT_WORDS: dict[str, str] = {
    "PASS": "PASS: verified, every check held",
    "FAIL": "FAIL: the drill ran and found a problem",
    "ERROR": "ERROR: the drill could not verify (treat it like a failure)",
    "SKIPPED": "SKIPPED: the drill is not configured",
}
VERDICT_EMOJI = {
    "PASS": ":white_check_mark:",
    "FAIL": ":red_circle:",
    "ERROR": ":warning:",
    "SKIPPED": ":white_circle:",
}
FINDING_TEXT_MAX = 600  # one finding stays readable on a phone; the full text is in the evidence
MEASURED_OBJECTIVES = (
    ("RTO", "rto_seconds", ("rto", "rto_seconds")),
    ("RPO", "rpo_seconds", ("rpo", "rpo_seconds")),
)


@dataclass(frozen=True)
class RenderOptions:
    """What the renderer needs from the catalogue, kept small so rendering stays pure."""

    max_findings: int = 5
    airflow_base_url: str = "http://localhost:8080"
    mention: str | None = None  # Slack markup of our own, e.g. "<!subteam^S0123>"; not escaped


@dataclass
class Report:
    """A main message and the details that go in its thread."""

    main: Message
    thread: Message | None = None


def task_log_url(ctx: RunContext | None, base_url: str) -> str | None:
    """The Airflow task log of ``ctx``: its own log_url, else built like Airflow 3's TaskInstance.log_url."""
    if ctx is None:
        return None
    if ctx.log_url:
        return ctx.log_url
    if ctx.run_id.startswith("cli__") or ctx.task_id == "cli":
        return None  # a terminal run has no Airflow log
    mapped = f"/mapped/{ctx.map_index}" if ctx.map_index >= 0 else ""
    return (
        f"{base_url.rstrip('/')}/dags/{quote(ctx.dag_id)}/runs/{quote(ctx.run_id, safe='')}"
        f"/tasks/{quote(ctx.task_id)}{mapped}?try_number={ctx.try_number}"
    )


def objective_of(result: DrillResult, keys: tuple[str, ...]) -> float | None:
    for key in keys:
        if key in result.objectives:
            return result.objectives[key]
    return None


def measured_vs_objective(measured: float | None, objective: float | None) -> str:
    """``4m 12s (objective 15m 00s, met)``; says "exceeded" when over the objective."""
    if measured is None:
        return (
            f"not measured (objective {format_duration(objective)})"
            if objective is not None
            else "not measured"
        )
    if objective is None:
        return format_duration(measured)
    state = "met" if measured <= objective else "EXCEEDED"
    return f"{format_duration(measured)} (objective {format_duration(objective)}, {state})"


def finding_text(item: Finding) -> str:
    """One finding as mrkdwn: code, severity, subject, message, fix hint."""
    subject = f" · {esc(item.subject)}" if item.subject else ""
    message = clip(esc(item.message), FINDING_TEXT_MAX)
    hint = clip(esc(item.hint), FINDING_TEXT_MAX)
    if item.suppressed is not None:  # kept and shown with its written reason; it did not drive the verdict
        return (
            f"*`{esc(item.code)}`* · {item.severity.value} · suppressed{subject}\n{message}\n"
            f"_Suppressed:_ {clip(esc(item.suppressed), FINDING_TEXT_MAX)}"
        )
    return f"*`{esc(item.code)}`* · {item.severity.value}{subject}\n{message}\n_Fix:_ {hint}"


def ordered_findings(result: DrillResult) -> list[Finding]:
    """Most severe first, keeping the drill's order among equals."""
    return sorted(result.findings, key=lambda f: (-f.severity.rank, not f.blocks_verification))


def _partial(result: DrillResult) -> str:
    """`` (partial, tier fast)`` when a verify tier below full ran: never shown as a full PASS."""
    verify = result.details.get("verify") if isinstance(result.details, dict) else None
    return (
        f" (partial, tier {verify.get('tier')})" if isinstance(verify, dict) and verify.get("partial") else ""
    )


def evidence_url(record: LedgerRecord | None, ctx: RunContext | None, log_url: str | None) -> str | None:
    """The record's evidence page in the Airflow UI that serves ``log_url`` (the run's task log, see
    ``task_log_url``): the same UI mounts the evidence pages. None without a record or without a log URL
    (a terminal run has no UI). Airflow's own log URL names the UI's address as Airflow knows it, so that
    address wins over the catalogue's ``airflow_base_url`` (often left at its default)."""
    if record is None or ctx is None or log_url is None:
        return None
    marker = f"/dags/{quote(ctx.dag_id)}/runs/"
    if marker not in log_url:
        return None
    return record_url(log_url[: log_url.rindex(marker)], record.seq)


def evidence_text(record: LedgerRecord | None) -> str:
    if record is None:
        return "Evidence: *not recorded* (no ledger configured for this run)"
    return f"Evidence: ledger record #{record.seq} · hash `{esc(record.hash[:12])}` · `drillbook evidence show {record.seq}`"


def render_result(
    result: DrillResult, record: LedgerRecord | None, ctx: RunContext | None, *, options: RenderOptions
) -> Report:
    """The on-call report of one result: summary + top findings, details in the thread."""
    verdict = result.verdict.value
    words = VERDICT_WORDS[verdict]
    findings = ordered_findings(result)
    top = findings[: options.max_findings]
    rest = len(findings) - len(top)
    log_url = task_log_url(ctx, options.airflow_base_url)

    title = f"{VERDICT_EMOJI[verdict]} {verdict}{_partial(result)}: {result.drill} ({result.kind})"
    worst = result.worst_severity()
    lead = f"*{esc(words)}.* Drill *{esc(result.drill)}* on `{esc(result.target)}`: "
    lead += f"{len(findings)} finding{'s' if len(findings) != 1 else ''}" + (
        f", worst severity *{worst.value}*." if worst else "."
    )
    if options.mention and result.verdict in (Verdict.FAIL, Verdict.ERROR):
        lead = f"{options.mention} {lead}"

    pairs: list[tuple[str, str]] = [
        ("Verdict", esc(verdict + _partial(result))),
        ("Target", f"`{esc(result.target)}`"),
    ]
    for label, measure, keys in MEASURED_OBJECTIVES:
        measured = getattr(result.measurements, measure)
        objective = objective_of(result, keys)
        if measured is not None or objective is not None:
            pairs.append((label, measured_vs_objective(measured, objective)))
    pairs.append(("Duration", format_duration(result.duration_seconds)))
    if result.controls:
        pairs.append(("Controls", esc(", ".join(result.controls))))
    if ctx is not None:
        pairs.append(("Run", f"`{esc(ctx.dag_id)}` · try {ctx.try_number} · {esc(ctx.trigger)}"))

    blocks: list[Any] = [header(title), section(lead), *fields(pairs)]
    if top:
        blocks.append(divider())
        blocks += [section(finding_text(f)) for f in top]
    if rest > 0:
        blocks.append(
            context(
                f"… and {rest} more finding{'s' if rest != 1 else ''}: see the thread and the evidence record"
            )
        )
    blocks.append(context(evidence_text(record)))
    blocks.append(buttons([("Task log", log_url), ("Evidence record", evidence_url(record, ctx, log_url))]))

    codes = ", ".join(f.code for f in top) + (f" and {rest} more" if rest > 0 else "")
    fallback = f"{verdict}: {esc(result.drill)} ({result.kind}) on {esc(result.target)}" + (
        f": {codes}" if codes else ""
    )
    main = Message(text=clip(fallback, MAX_FALLBACK_TEXT), blocks=fit(blocks))
    return Report(main=main, thread=_details(result, findings, options=options))


def _details(result: DrillResult, findings: list[Finding], *, options: RenderOptions) -> Message:
    """The thread reply: phases with timings, then every finding beyond the top N with its detail."""
    blocks: list[Any] = []
    if result.phases:
        rows = [
            f"{'✓' if p.status == 'ok' else '✗' if p.status == 'failed' else '-'} {p.name}: {p.status}, {format_duration(p.seconds)}"
            + (f" ({p.detail})" if p.detail else "")
            for p in result.phases
        ]
        blocks.append(section(esc("Phases:\n" + "\n".join(rows))))
    for item in findings[options.max_findings :]:
        blocks.append(section(finding_text(item)))
    for item in findings:
        if item.detail:
            detail = "\n".join(f"{k} = {v}" for k, v in item.detail.items())
            blocks.append(
                section(f"`{esc(item.code)}` detail:\n```{clip(esc(detail), MAX_SECTION_TEXT - 200)}```")
            )
    env = ", ".join(f"{k} {v}" for k, v in sorted(result.environment.items()))
    if env:
        blocks.append(context(esc(f"Environment: {env}")))
    text = f"Details of {esc(result.drill)}: {len(result.phases)} phases, {len(findings)} findings"
    return Message(text=text, blocks=fit(blocks, overflow_note="the evidence record holds every finding"))


@dataclass(frozen=True)
class IncidentView:
    """What the watchdog reports about one drill (see drillbook.reporting.assessment.Incident)."""

    code: str
    drill: str
    kind: str
    message: str
    hint: str
    resolved: bool = False


def render_incident(incident: IncidentView, *, options: RenderOptions) -> Message:
    """A watchdog message: a drill went silent, never verified, or is stale (or recovered)."""
    if incident.resolved:
        title = f":white_check_mark: RESOLVED: {incident.code} for {incident.drill}"
        body = f"*Resolved.* `{esc(incident.code)}` no longer holds for drill *{esc(incident.drill)}* ({esc(incident.kind)})."
        return Message(
            text=f"RESOLVED: {incident.code} for {esc(incident.drill)}",
            blocks=fit([header(title), section(body)]),
        )
    title = f":rotating_light: {incident.code}: {incident.drill} ({incident.kind})"
    lead = f"*Silence is not success.* {esc(incident.message)}\n_Fix:_ {esc(incident.hint)}"
    if options.mention:
        lead = f"{options.mention} {lead}"
    source = f"Reported by the drillbook watchdog (dr_watchdog); history: drillbook evidence list --drill {incident.drill}"
    blocks = [header(title), section(lead), context(esc(source))]
    return Message(
        text=clip(f"{incident.code}: {esc(incident.drill)}: {esc(incident.message)}", MAX_FALLBACK_TEXT),
        blocks=fit(blocks),
    )


def render_task_failure(
    *,
    dag_id: str,
    task_id: str | None,
    run_id: str | None,
    try_number: int | None,
    exception: str | None,
    log_url: str | None,
    reason: str | None = None,
    options: RenderOptions,
) -> Message:
    """An Airflow task or DAG run that crashed: report it like an ERROR, never as silence."""
    what = f"task {task_id}" if task_id else "DAG run"
    summary = redact(exception or reason or "no exception was passed to the callback")
    lead = (
        f"*ERROR: the Airflow {esc(what)} failed*, so the drill did not produce a verified result "
        f"(treat it like a failure).\n*Exception:* `{clip(esc(summary), 1500)}`"
    )
    if options.mention:
        lead = f"{options.mention} {lead}"
    pairs = [
        ("DAG", f"`{esc(dag_id)}`"),
        ("Task", f"`{esc(task_id or '(whole run)')}`"),
        ("Try", str(try_number or "n/a")),
    ]
    if run_id:
        pairs.append(("Run", f"`{esc(run_id)}`"))
    blocks = [
        header(f":warning: ERROR: {dag_id} {what} crashed"),
        section(lead),
        *fields(pairs),
        buttons([("Task log", log_url)]),
    ]
    text = f"ERROR: {esc(dag_id)} {esc(what)} failed (try {try_number or 'n/a'}): {clip(esc(summary), 300)}"
    return Message(text=text, blocks=fit(blocks))
