"""``drillbook outbox``: show the reports written to the local outbox; ``drillbook outbox flush``: send what is owed.

Rules:
- ``show`` (the default) is read-only except with ``--clear``, which says how
  many messages it removed; the text shown is the same as ``make demo`` prints;
- ``owed`` lists the reports the ledger says never reached Slack (read-only):
  ledger seq, time, verdict, drill, why, failed attempts, report id;
- ``flush`` re-sends, each at most once, every drill report and digest the
  ledger says never reached Slack (``drillbook.notify.redeliver``, the same
  code the hourly ``dr_watchdog`` runs). It needs the ledger (``--ledger-dsn``
  or ``$DRILLBOOK_LEDGER_DSN``) and a Slack connection; without either it says
  so and exits 2. Exit 0 when nothing is owed any more, 1 when reports are
  still owed (Slack failed, or more than one run's worth is left).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import UTC, datetime

from drillbook.cli.config import load_catalogue_for, settings_of


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        nargs="?",
        choices=("show", "owed", "flush"),
        default="show",
        help="show (default): print the outbox; owed: list the reports the ledger says never reached Slack; "
        "flush: re-send them",
    )
    parser.add_argument(
        "--path", default=None, help="outbox file (default: $DRILLBOOK_OUTBOX or var/outbox.jsonl)"
    )
    parser.add_argument("--json", action="store_true", help="print the raw entries as JSON lines")
    parser.add_argument("--clear", action="store_true", help="empty the outbox after showing it")
    parser.add_argument(
        "--ledger-dsn", default=None, help="flush: the evidence ledger (default: $DRILLBOOK_LEDGER_DSN)"
    )
    parser.add_argument(
        "--catalogue",
        "--config",
        dest="catalogue",
        default=None,
        help="flush: catalogue file (default: $DRILLBOOK_CATALOGUE or include/drills.yaml)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.action == "flush":
        return flush(args)
    if args.action == "owed":
        return owed(args)
    from drillbook.notify.outbox import outbox_path, read_outbox, render_outbox_text
    from drillbook.safety.redact import redact

    path = outbox_path(args.path or settings_of(args).outbox)
    if args.json:
        for entry in read_outbox(path):
            sys.stdout.write(redact(json.dumps(entry, ensure_ascii=False)) + "\n")
    else:
        sys.stdout.write(redact(render_outbox_text(path)))
    if args.clear and path.exists():
        count = len(read_outbox(path))
        path.unlink()
        sys.stderr.write(f"removed {count} message(s) from {path}\n")
    return 0


def _ledger_dsn(args: argparse.Namespace) -> str:
    from drillbook.cli.config import settings_of
    from drillbook.errors import ConnectionNotConfigured

    dsn = args.ledger_dsn or settings_of(args).ledger_dsn
    if not dsn:
        raise ConnectionNotConfigured(
            f"outbox {args.action} needs the ledger: pass --ledger-dsn or set DRILLBOOK_LEDGER_DSN"
        )
    return dsn


def owed(args: argparse.Namespace) -> int:
    """List the owed reports; exit 0 when none, 1 when some are owed."""
    from drillbook.ledger.store import Ledger
    from drillbook.notify.owed import delivery_state
    from drillbook.safety.redact import redact

    with Ledger(_ledger_dsn(args), spool=settings_of(args).spool_file) as ledger:
        state = delivery_state(ledger)
    for item in state.owed:
        r = item.record
        print(
            redact(
                f"  #{r.seq:<6} {r.recorded_at:%Y-%m-%d %H:%M} UTC  {r.verdict:<7} {r.record_type:<6} {r.kind}/{r.drill}  "
                f"{'/'.join(item.reasons)}, {item.attempts} failed attempt(s)  report {item.report_id}"
            )
        )
    print(
        f"{len(state.owed)} report(s) owed to Slack; `drillbook outbox flush` (or the next dr_watchdog run) sends them",
        file=sys.stderr,
    )
    return 1 if state.owed else 0


def flush(args: argparse.Namespace) -> int:
    """Re-send the owed reports now; print what was delivered and what is left."""
    from drillbook.cli.config import resolver_of
    from drillbook.errors import ConnectionNotConfigured
    from drillbook.ledger.store import Ledger
    from drillbook.notify.redeliver import redeliver
    from drillbook.run.context import RunContext
    from drillbook.safety.redact import redact

    dsn = _ledger_dsn(args)
    catalogue = load_catalogue_for(args)
    now = datetime.now(UTC)
    ctx = RunContext(
        dag_id="dr_outbox_flush",
        run_id=f"cli__{now:%Y%m%dT%H%M%S}__{uuid.uuid4().hex[:8]}",
        task_id="cli",
        trigger="manual",
    )
    with Ledger(dsn, spool=settings_of(args).spool_file) as ledger:
        notifier = resolver_of(args).notifier(catalogue=catalogue, ledger=ledger, outbox=args.path)
        if not notifier.delivers:
            conn = catalogue.defaults.slack.connection
            raise ConnectionNotConfigured(
                f"outbox flush needs a Slack connection: set AIRFLOW_CONN_{conn.upper()} "
                "(the reports stay owed in the ledger until then)"
            )
        run = redeliver(ledger, notifier, ctx=ctx)
    print(
        f"{run.owed} report(s) owed; {len(run.resent)} re-sent, {len(run.found)} found already in Slack, "
        f"{len(run.summarised)} summarised, {len(run.unrouted)} no longer routed; {run.left} still owed"
    )
    if run.error:
        print(redact(f"drillbook: Slack failed, the rest stay owed: {run.error}"), file=sys.stderr)
    return 1 if run.left else 0
