"""``drillbook run certificates``: check the certificates of a catalogue drill, or of ad hoc endpoints and files.

    drillbook run certificates --drill NAME
    drillbook run certificates --endpoint host:port [--endpoint ...] [--file PATH] [--ca-bundle PATH]
                               [--sni NAME] [--starttls smtp|postgres] [--json]

Rules: one result per endpoint / file certificate / ACM certificate, a line
each, the findings of every non-clean one with their fix hint, then the one
summary (soonest expiries and failures); the exit code is 0 only when every
certificate is PASS (1 FAIL, 2 ERROR). With a ledger configured
(``--ledger-dsn`` / ``DRILLBOOK_LEDGER_DSN``) each result is a ledger row of
its own (task id ``cli.<target>``) and the summary is recorded and notified.
"""

from __future__ import annotations

import argparse
from typing import Any

from drillbook.cli import common
from drillbook.cli.config import load_catalogue_for


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--drill", default=None, help="name of a certificates drill in the catalogue")
    parser.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="probe this endpoint (repeatable)",
    )
    parser.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="PATH",
        help="check this PEM/DER file or directory (repeatable)",
    )
    parser.add_argument(
        "--ca-bundle",
        default=None,
        metavar="PATH",
        help="PEM bundle of private CAs to trust (added to the system roots)",
    )
    parser.add_argument(
        "--sni",
        default=None,
        metavar="NAME",
        help="name to ask for and check on every --endpoint (default: its host)",
    )
    parser.add_argument(
        "--starttls",
        choices=["smtp", "postgres"],
        default=None,
        help="speak this protocol before TLS on every --endpoint",
    )
    parser.add_argument(
        "--timeout", default="10s", help="per-endpoint timeout for ad hoc endpoints (default 10s)"
    )
    parser.add_argument("--concurrency", type=int, default=100, help="open connections at most (default 100)")
    parser.add_argument("--warn", default="30d", help="warn threshold for ad hoc checks (default 30d)")
    parser.add_argument("--critical", default="7d", help="critical threshold for ad hoc checks (default 7d)")
    common.add_common_run_arguments(parser)
    common.add_report_arguments(parser)  # --fail-on SEVERITY, --junit FILE


def adhoc_drill(args: argparse.Namespace) -> Any:
    """A certificates drill built from the command line."""
    from drillbook.drills.certificates.catalogue import CertificatesDrill, EndpointSpec, Thresholds

    endpoints = [EndpointSpec(address=a, sni=args.sni, starttls=args.starttls) for a in args.endpoint]
    return CertificatesDrill(
        name="adhoc",
        kind="certificates",
        schedule="@daily",
        description="ad hoc command-line check",
        endpoints=endpoints,
        files=list(args.file),
        ca_bundle=args.ca_bundle,
        timeout=args.timeout,
        concurrency=args.concurrency,
        thresholds=Thresholds(warn=args.warn, critical=args.critical),
    )


def _line(result: Any) -> str:
    days = result.measurements.values.get("days_left")
    left = f"{days:8.1f} d" if isinstance(days, int | float) else "       - d"
    codes = ", ".join(result.codes()) or "-"
    return f"  {result.verdict.value:<7} {left}  {result.target}  {codes}"


def main(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from drillbook.drills.certificates import run_certificates

    adhoc = bool(args.endpoint or args.file)
    if args.drill and adhoc:
        return common.fail("give either --drill NAME or ad hoc --endpoint/--file, not both")
    base_dir = None
    if args.drill:
        catalogue = load_catalogue_for(args)
        drill = catalogue.drill(args.drill)
        if drill.kind != "certificates":
            return common.fail(f"drill {args.drill!r} is a {drill.kind} drill, not certificates")
        base_dir = catalogue.base_dir
    elif adhoc:
        try:
            drill = adhoc_drill(args)
        except ValidationError as exc:
            first = exc.errors()[0]
            return common.fail(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
    else:
        return common.fail("nothing to check: give --drill NAME, or --endpoint HOST:PORT and/or --file PATH")

    with common.stoppable() as stop:
        got = stop.run(
            lambda: run_certificates(drill, base_dir=base_dir),
            kind="certificates",
            drill=drill.name,
            target=drill.name,
            controls=list(drill.controls),
        )
        return stop.exit_code(_report(args, drill, got if isinstance(got, list) else [got]))


def _report(args: argparse.Namespace, drill: Any, results: list[Any]) -> int:
    from drillbook.drills.certificates import summarize, summary_lines
    from drillbook.drills.certificates.drill import task_suffix

    summary = summarize(results, drill=drill)
    if args.json:
        common.emit(results, as_json=True)
    else:
        common.out(f"certificates drill {drill.name!r}: {len(results)} certificate source(s)")
        for result in results:
            common.out(_line(result))
        for result in results:
            if result.findings:
                common.out(common.render_text(result))
        for line in summary_lines(summary):
            common.out(line)
    if common.ledger_dsn(args):  # a manual run becomes evidence only when a ledger is configured
        for result in results:
            common.record_cli_result(result, args, task_id=f"cli.{task_suffix(result.target)}", notify=False)
        common.record_cli_result(summary, args, task_id="cli.summary")
    if not results:
        return common.fail("the drill produced no result", code=2)
    return common.report_to_ci(results, args)
