"""``drillbook run alert-path --drill NAME``: send a test alert down each path now and prove it arrived.

Connections are read from ``AIRFLOW_CONN_<ID>`` / ``DRILLBOOK_CONN_<ID>``
(URI or JSON) without importing Airflow. Rules: one result per path, printed
as it finishes; tokens and webhook URLs never appear in output (every line
passes through ``redact``; URLs are shown as ``redact_url``); the exit code is
the worst verdict over the paths (0 PASS, 1 FAIL, 2 ERROR). A stop signal
(SIGTERM/SIGINT) during a path ends that path with ``DRILL_INTERRUPTED`` after
its canary is resolved; that result is printed and recorded, the remaining
paths are not run, and the exit code is 128 + the signal number.
"""

from __future__ import annotations

import argparse

from drillbook.cli import common
from drillbook.cli.config import load_catalogue_for


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--drill", required=True, help="name of an alert_path drill in the catalogue")
    parser.add_argument(
        "--path",
        action="append",
        default=None,
        metavar="NAME",
        help="prove only this path (repeatable; default: every path of the drill)",
    )
    common.add_common_run_arguments(parser)
    common.add_report_arguments(parser)  # --fail-on SEVERITY, --junit FILE


def main(args: argparse.Namespace) -> int:
    from drillbook.catalogue.common import format_duration
    from drillbook.cli.config import resolver_of
    from drillbook.drills.alert_path import run_path
    from drillbook.drills.alert_path.catalogue import AlertPathDrill
    from drillbook.drills.alert_path.clients import EnvPathClients

    catalogue = load_catalogue_for(args)
    drill = catalogue.drill(args.drill)
    if not isinstance(drill, AlertPathDrill):
        return common.fail(f"drill {args.drill!r} is a {drill.kind} drill, not alert_path")
    known = [p.name for p in drill.paths]
    names = args.path or known
    unknown = [n for n in names if n not in known]
    if unknown:
        return common.fail(f"drill {drill.name!r} has no path {unknown[0]!r}; paths: {', '.join(known)}")

    clients = EnvPathClients(resolver_of(args))
    results = []
    for name in names:
        path = drill.path(name)
        if not args.json:
            common.out(
                f"alert path {drill.name}/{name} ({path.type}): objective {format_duration(drill.delivery_of(path))}, "
                f"giving up after {format_duration(drill.give_up_of(path))}"
            )
        with common.stoppable() as stop:
            result = stop.run(
                lambda: run_path(
                    drill=drill,
                    path_name=name,  # noqa: B023 - the lambda is called at once, inside this iteration
                    clients=clients,
                    on_phase=None if args.json else common.phase_printer(),
                ),
                kind="alert_path",
                drill=drill.name,
                target=name,
                controls=list(drill.controls),
            )
            if (
                stop.state.signum is not None
            ):  # the rest of the paths are not run; this one's evidence is recorded
                common.emit(result, as_json=args.json)
                if common.ledger_dsn(args):
                    common.record_cli_result(result, args, task_id=f"cli.{name}")
                return stop.exit_code(2)
        results.append(result)
        if not args.json:
            common.emit(result, as_json=False)
            delivery = result.details.get("delivery") or {}
            # an acceptance-only path read nothing back: say so instead of a seen time and a latency
            seen = delivery.get("seen_at") or (
                "accepted, not seen" if str(delivery.get("seen_via", "")).startswith("accepted") else "-"
            )
            common.out(
                f"  sent {delivery.get('sent_at') or '-'} · seen {seen} · "
                f"latency {format_duration(delivery.get('latency_seconds'))} · attempts {delivery.get('attempts')} · "
                f"HTTP {delivery.get('http_status') or '-'} · cleanup {delivery.get('cleanup')}"
            )
        if common.ledger_dsn(args):  # a manual run becomes evidence only when a ledger is configured
            common.record_cli_result(result, args, task_id=f"cli.{name}")
        if result.details.get("interrupted_by"):
            break  # stopped by a signal: the evidence is recorded, the other paths are not started
    if args.json:
        common.emit(results, as_json=True)
    stopped = next((r.details["interrupted_by"] for r in results if r.details.get("interrupted_by")), None)
    if stopped:
        import signal

        return 128 + int(signal.Signals[stopped])
    return common.report_to_ci(results, args)
