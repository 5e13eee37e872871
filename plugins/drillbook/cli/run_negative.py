"""``drillbook run negative --drill NAME``: run a drill's negative drill (fire alarm check) now.

    drillbook run negative --drill NAME [--if-due] [--json] [--ledger-dsn DSN]

Rules: the drill must declare ``negative: {every: ...}`` in the catalogue; the
broken input, the red inner run, its page (Slack through ``AIRFLOW_CONN_<slack
connection>``, else the outbox, which does not count as a page) and the verdict
follow ``drillbook.drills.negative``. Connections resolve from the environment
like every other ``run`` command. ``--if-due`` runs only when the ledger holds
no negative result of the drill within ``every`` (for cron). Exit 0 when the
detector was proven, 1 DETECTOR_BLIND, 2 when it could not run.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from drillbook.cli import common
from drillbook.cli.config import load_catalogue_for, settings_of


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--drill", required=True, help="name of a catalogue drill that declares negative: {every: ...}"
    )
    parser.add_argument(
        "--if-due",
        action="store_true",
        help="run only when no negative result of this drill was recorded within its 'every' (needs a ledger)",
    )
    common.add_common_run_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from drillbook.cli.config import resolver_of
    from drillbook.drills import negative
    from drillbook.drills.alert_path.clients import EnvPathClients
    from drillbook.result import utcnow
    from drillbook.run.context import RunContext
    from drillbook.run.pipeline import record_and_report

    catalogue = load_catalogue_for(args)
    drill = catalogue.drill(args.drill)
    if drill.negative is None:
        return common.fail(
            f"drill {drill.name!r} declares no negative drill; add 'negative: {{every: 4w}}' to it in "
            f"{catalogue.path}"
        )
    ledger = None
    if common.ledger_dsn(args):
        from drillbook.ledger.store import Ledger

        ledger = Ledger(common.ledger_dsn(args) or "", spool=settings_of(args).spool_file)
    if args.if_due:
        if ledger is None:
            return common.fail(
                "--if-due needs a ledger (--ledger-dsn or DRILLBOOK_LEDGER_DSN) to know the last run"
            )
        last = ledger.query(
            kind=negative.KIND, drill=drill.name, record_type="drill", limit=1, newest_first=True
        )
        when = last[0].recorded_at if last else None
        if not negative.is_due(when, every=drill.negative.every, now=utcnow()):
            common.out(f"negative drill of {drill.name!r} is not due: last run {when:%Y-%m-%d %H:%M} UTC")
            return 0
    base = RunContext.for_cli(kind=negative.KIND, drill=drill.name)
    ctx = RunContext(dag_id=base.dag_id, run_id=base.run_id, task_id="cli.negative", trigger="manual")
    notifier = resolver_of(args).notifier(catalogue=catalogue, ledger=ledger)
    if not args.json:
        common.out(
            f"negative drill of {drill.kind} drill {drill.name!r}: expecting red with "
            f"{' or '.join(sorted(negative.expected(drill.kind)))} and a delivered page"
        )
    # A stop signal mid-run records DRILL_INTERRUPTED (ERROR), never the DETECTOR_BLIND that judging an
    # interrupted inner run would give: the detector was not tested, which is neither a pass nor blindness.
    resources = negative.ClientResources(
        dsn=resolver_of(args).postgres_dsn, clients=EnvPathClients(resolver_of(args))
    )
    with common.stoppable() as stop, tempfile.TemporaryDirectory(prefix="drillbook-negative-") as tmp:
        result = stop.run(
            lambda: negative.run_negative(
                drill,
                work_dir=Path(tmp),
                base_dir=catalogue.base_dir,
                resources=resources,
                notifier=notifier,
                ctx=ctx,
                on_phase=None if args.json else common.phase_printer(),
            ),
            kind=negative.KIND,
            drill=drill.name,
            target=f"{drill.kind}:{drill.name}",
            controls=list(drill.controls),
        )
        common.emit(result, as_json=args.json)
        # evidence first, then the usual report: a DETECTOR_BLIND result pages like any FAIL
        reported = record_and_report(result, ctx=ctx, ledger=ledger, notifier=notifier)
        if reported.record is not None:
            common.out(f"  evidence: ledger record #{reported.record.seq} ({reported.record.hash[:12]})")
        return stop.exit_code(int(reported.result.verdict.exit_code))
