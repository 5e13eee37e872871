"""What every ``drillbook run ...`` shares: live phase lines, the final report, JSON, ledger recording.

Rules: output is readable in a terminal and in a CI log (no colour codes, no
cursor tricks; status in words); every line passes through ``redact``; the
exit code is the verdict's (0 PASS, 1 FAIL, 2 ERROR, 3 SKIPPED); the whole
scheme, with 4 for an internal error, is ``drillbook.cli.exits``. A stop
signal (SIGTERM/SIGINT) during a run ends it with a recorded ERROR
(``DRILL_INTERRUPTED``, see ``stoppable``) and exit code 128 + the signal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any

from drillbook.cli.config import load_catalogue_for, settings_of
from drillbook.result import DrillResult, Phase, Severity, Verdict
from drillbook.safety.redact import redact

_STATUS = {"ok": "ok    ", "failed": "FAILED", "skipped": "skip  ", "not configured": "n/a   "}
_VERDICT_SENTENCE = {
    Verdict.PASS: "PASS — every check ran and held.",
    Verdict.FAIL: "FAIL — the drill ran and found problems that need fixing.",
    Verdict.ERROR: "ERROR — the drill could not verify; treat it like a failure until it runs clean.",
    Verdict.SKIPPED: "SKIPPED — nothing is configured to check.",
}


def out(text: str = "", stream: IO[str] | None = None) -> None:
    print(redact(text), file=stream or sys.stdout, flush=True)


def phase_printer(stream: IO[str] | None = None) -> Callable[[Phase], None]:
    """An ``on_phase`` callback printing each phase as it completes."""

    def show(phase: Phase) -> None:
        status = _STATUS.get(phase.status, phase.status[:6].ljust(6))
        detail = f"  {phase.detail}" if phase.detail else ""
        out(f"  [{status}] {phase.name:<22} {phase.seconds:8.2f}s{detail}", stream)

    return show


def add_common_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--json, --ledger-dsn, --catalogue, --no-notify: the options every run command takes."""
    parser.add_argument("--json", action="store_true", help="print the DrillResult(s) as JSON")
    parser.add_argument("--no-notify", action="store_true", help="record in the ledger but do not notify")
    parser.add_argument(
        "--ledger-dsn", default=None, help="record the result in this ledger (default: $DRILLBOOK_LEDGER_DSN)"
    )
    parser.add_argument(
        "--catalogue",
        "--config",
        dest="catalogue",
        default=None,
        help="catalogue file (default: $DRILLBOOK_CATALOGUE or include/drills.yaml)",
    )


def _fmt_seconds(value: float | None) -> str:
    from drillbook.catalogue.common import format_duration

    return format_duration(value)


def render_text(result: DrillResult, *, with_phases: bool = False) -> str:
    """The human report of one result: target, measurements, findings with hints, verdict sentence."""
    lines: list[str] = [f"{result.kind} drill {result.drill!r} on {result.target}"]
    if with_phases:
        for p in result.phases:
            lines.append(
                f"  [{_STATUS.get(p.status, p.status)}] {p.name:<22} {p.seconds:8.2f}s  {p.detail}".rstrip()
            )
    m = result.measurements
    facts = []
    if m.rto_seconds is not None:
        obj = result.objectives.get("rto_seconds")
        facts.append(
            f"RTO {_fmt_seconds(m.rto_seconds)}" + (f" (objective {_fmt_seconds(obj)})" if obj else "")
        )
    if m.rpo_seconds is not None:
        obj = result.objectives.get("rpo_seconds")
        facts.append(
            f"RPO {_fmt_seconds(m.rpo_seconds)}" + (f" (objective {_fmt_seconds(obj)})" if obj else "")
        )
    facts.append(f"{m.counts.get('checks_run', 0)} checks in {_fmt_seconds(result.duration_seconds)}")
    lines.append("  " + " · ".join(facts))
    if result.findings:
        lines.append("  findings:")
        order = sorted(result.findings, key=lambda f: -Severity(f.severity).rank)
        for f in order:
            subject = f" [{f.subject}]" if f.subject else ""
            lines.append(f"    {f.severity.value.upper():<8} {f.code}{subject}: {f.message}")
            if f.suppressed is not None:  # kept and shown, but it did not drive the verdict
                lines.append(f"             SUPPRESSED: {f.suppressed}")
            else:
                lines.append(f"             fix: {f.hint}")
    lines.append(f"  verdict: {partial_label(result)}{_VERDICT_SENTENCE[result.verdict]}")
    return "\n".join(lines)


def partial_label(result: DrillResult) -> str:
    """``"partial (tier fast) "`` when the drill verified only part of the data, else ``""``."""
    verify = result.details.get("verify") if isinstance(result.details, dict) else None
    if isinstance(verify, dict) and verify.get("partial"):
        return f"partial (tier {verify.get('tier')}) "
    return ""


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """--fail-on and --junit: how a run command reports to CI (any run command may use them)."""
    parser.add_argument(
        "--fail-on",
        default=None,
        choices=[s.value for s in Severity],
        metavar="SEVERITY",
        help="exit 1 when an unsuppressed finding is at or above SEVERITY (info, low, medium, high, "
        "critical), 0 otherwise; ERROR still exits 2; the verdict in the ledger does not change",
    )
    parser.add_argument(
        "--junit", default=None, metavar="FILE", help="also write the result as JUnit XML to FILE"
    )


def exit_code_for(results: list[DrillResult], fail_on: str | None) -> int:
    """The exit code: the verdicts' (see ``combined_exit_code``), or with ``fail_on`` the threshold's.

    A result that could not verify (ERROR) exits 2 whatever the threshold: principle 1.
    """
    if fail_on is None:
        return combined_exit_code(results)
    if not results or any(r.verdict is Verdict.ERROR for r in results):
        return Verdict.ERROR.exit_code
    threshold = Severity(fail_on)
    hit = any(f.suppressed is None and f.severity.at_least(threshold) for r in results for f in r.findings)
    return 1 if hit else 0


def report_to_ci(results: list[DrillResult], args: argparse.Namespace) -> int:
    """Write ``--junit`` when asked and return the exit code ``--fail-on`` implies; bad paths exit 2."""
    path = getattr(args, "junit", None)
    if path:
        from drillbook.cli.junit import write_junit

        try:
            write_junit(results, path, fail_on=getattr(args, "fail_on", None))
        except OSError as exc:
            return fail(f"--junit {path!r}: cannot write the JUnit report: {exc.strerror or exc}")
    return exit_code_for(results, getattr(args, "fail_on", None))


def emit(results: DrillResult | list[DrillResult], *, as_json: bool, with_phases: bool = False) -> None:
    """Print results as JSON (one object, or a list for several) or as the human report."""
    items = results if isinstance(results, list) else [results]
    if as_json:
        payload: Any = (
            [r.to_json_dict() for r in items] if isinstance(results, list) else items[0].to_json_dict()
        )
        out(json.dumps(payload, indent=2, sort_keys=True, default=str))
        return
    for r in items:
        out(render_text(r, with_phases=with_phases))


def combined_exit_code(results: list[DrillResult]) -> int:
    """ERROR beats FAIL beats PASS: the worst verdict decides."""
    if not results:
        return Verdict.ERROR.exit_code
    return max(r.verdict.exit_code if r.verdict is not Verdict.SKIPPED else 0 for r in results)


def ledger_dsn(args: argparse.Namespace) -> str | None:
    from drillbook.cli.config import settings_of

    return getattr(args, "ledger_dsn", None) or settings_of(args).ledger_dsn or None


def record_cli_result(
    result: DrillResult, args: argparse.Namespace, *, task_id: str = "cli", notify: bool = True
) -> Any:
    """Record a manual run in the ledger (when one is configured), then notify like a scheduled run."""
    from drillbook.run.context import RunContext
    from drillbook.run.pipeline import record_and_report

    notify = notify and not getattr(args, "no_notify", False)  # --no-notify holds for every run command
    dsn = ledger_dsn(args)
    ledger = None
    if dsn:
        from drillbook.ledger.store import Ledger

        ledger = Ledger(dsn, spool=settings_of(args).spool_file)
    notifier = None
    if notify:
        from drillbook.catalogue import Catalogue
        from drillbook.cli.config import resolver_of

        # an ad hoc run has no catalogue entry: route with the default settings
        catalogue = _catalogue_or_none(args) or Catalogue()
        notifier = resolver_of(args).notifier(catalogue=catalogue, ledger=ledger)
    base = RunContext.for_cli(kind=result.kind, drill=result.drill)
    ctx = RunContext(dag_id=base.dag_id, run_id=base.run_id, task_id=task_id, trigger="manual")
    reported = record_and_report(result, ctx=ctx, ledger=ledger, notifier=notifier)
    if reported.record is not None:
        out(f"  evidence: ledger record #{reported.record.seq} ({reported.record.hash[:12]})", sys.stderr)
    elif reported.spooled:
        out(
            f"  evidence: SPOOLED — the ledger could not be written; the record waits in {reported.spooled} "
            "and is replayed by the next run or `drillbook ledger flush`",
            sys.stderr,
        )
    return reported


def _catalogue_or_none(args: argparse.Namespace) -> Any:
    from drillbook.errors import CatalogueError

    try:
        return load_catalogue_for(args)
    except CatalogueError:
        return None


def fail(message: str, code: int = 2) -> int:
    """Print a clear error to stderr and return the exit code."""
    out(f"drillbook: error: {message}", sys.stderr)
    return code


class Stoppable:
    """Runs a drill so that SIGTERM/SIGINT ends it with a DRILL_INTERRUPTED result instead of no evidence."""

    def __init__(self, state: Any):
        self.state = state

    def run(self, call: Callable[[], Any], *, kind: str, drill: str, target: str, controls: list[str]) -> Any:
        """``call()``'s value; or, when a stop signal came during it, an ERROR result saying so.

        A drill that catches the stop itself (backup-restore) returns its own DRILL_INTERRUPTED result;
        any other result returned after a stop (a negative drill judging an interrupted inner run)
        is replaced, because nothing it says was checked to the end.
        """
        from drillbook.drills.backup_restore.lifetime import Interrupted

        try:
            value = call()
        except Interrupted:
            value = None
        self.state.defer()  # from here on a stop signal waits for the evidence to be recorded
        if self.state.signum is None:
            return value
        if isinstance(value, DrillResult) and "DRILL_INTERRUPTED" in value.codes():
            return value
        return interrupted_result(
            kind=kind, drill=drill, target=target, controls=controls, signum=self.state.signum
        )

    def exit_code(self, default: int) -> int:
        return int(self.state.exit_code(default))


def interrupted_result(
    *, kind: str, drill: str, target: str, controls: list[str], signum: int
) -> DrillResult:
    import signal

    from drillbook.drills.base import ResultBuilder

    b = ResultBuilder(kind=kind, drill=drill, target=target, controls=list(controls))
    b.find(
        "DRILL_INTERRUPTED",
        f"the drill was stopped by {signal.Signals(signum).name} before it finished; "
        "nothing it had not yet reported was checked",
        subject=drill,
    )
    return b.finish()


@contextlib.contextmanager
def stoppable() -> Iterator[Stoppable]:
    """Hold SIGTERM/SIGINT for one run command: the run is cut short, its evidence is still recorded."""
    from drillbook.drills.backup_restore.lifetime import stop_on_signals

    with stop_on_signals() as state:
        yield Stoppable(state)
