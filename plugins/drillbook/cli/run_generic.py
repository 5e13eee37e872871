"""``drillbook run <kind> --drill NAME`` for a registered kind that brings no command of its own.

Rules: the drill is read from the catalogue and must be of the command's kind;
its connections resolve from ``AIRFLOW_CONN_<ID>`` / ``DRILLBOOK_CONN_<ID>``
like every other run command, through the kind's uniform ``run(spec,
resources)``; one line per result, the findings with their fix hints; a stop
signal ends the run with ``DRILL_INTERRUPTED``; with a ledger configured each
result is recorded (task id ``cli.<n>`` when there are several) and notified;
the exit code is the worst verdict's (0 PASS, 1 FAIL, 2 ERROR, 3 SKIPPED).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from drillbook.cli import common


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--drill", required=True, help="name of a catalogue drill of this kind")
    common.add_common_run_arguments(parser)
    common.add_report_arguments(parser)  # --fail-on SEVERITY, --junit FILE


def cli_resources() -> object:
    """Connections from the environment, for any kind (the CLI's backend of ``registry.Resources``)."""
    from drillbook.drills.alert_path.clients import EnvPathClients
    from drillbook.drills.registry import ClientResources
    from drillbook.resources.connections import postgres_dsn_from_env

    return ClientResources(dsn=postgres_dsn_from_env, clients=EnvPathClients())


def main(args: argparse.Namespace) -> int:
    from drillbook.catalogue import load_catalogue
    from drillbook.drills import registry

    kind = registry.get(args.drill_kind)
    from drillbook.cli.config import settings_of

    catalogue = load_catalogue(args.catalogue, gx_suites=settings_of(args).suite_check_for("cli"))
    drill = catalogue.drill(args.drill)
    if drill.kind != kind.name:
        return common.fail(f"drill {args.drill!r} is a {drill.kind} drill, not {kind.name}")
    ledger = None
    if common.ledger_dsn(args):
        from drillbook.ledger.store import Ledger

        ledger = Ledger(common.ledger_dsn(args) or "", spool=settings_of(args).spool_file)
    if not args.json:
        common.out(f"{kind.name} drill {drill.name!r}")
    with common.stoppable() as stop, tempfile.TemporaryDirectory(prefix=f"drillbook-{kind.command}-") as tmp:
        spec = registry.RunSpec(
            drill=drill,
            work_dir=Path(tmp),
            base_dir=catalogue.base_dir,
            ledger=ledger,
            on_phase=None if args.json else common.phase_printer(),
        )
        got = stop.run(
            lambda: kind.run_drill(spec, cli_resources()),  # type: ignore[arg-type]
            kind=kind.name,
            drill=drill.name,
            target=drill.name,
            controls=list(drill.controls),
        )
        results = got if isinstance(got, list) else [got]
        common.emit(results, as_json=args.json)
        if ledger is not None:  # a manual run becomes evidence only when a ledger is configured
            for n, result in enumerate(results):
                common.record_cli_result(
                    result,
                    args,
                    task_id="cli" if len(results) == 1 else f"cli.{n}",
                    notify=not args.no_notify,
                )
        if not results:
            return common.fail("the drill produced no result", code=2)
        return stop.exit_code(common.report_to_ci(results, args))
