"""``drillbook watchdog`` and ``drillbook digest``: the same checks as dr_watchdog / dr_digest__*, from a terminal.

Rule: they read and write the same ledger (``--ledger-dsn`` or
``$DRILLBOOK_LEDGER_DSN``) and post the same way as the DAGs (Slack when
``AIRFLOW_CONN_DRILLBOOK_SLACK`` is set, else the outbox), so a manual run
counts for the de-duplication exactly like a scheduled one.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from drillbook.cli.config import load_catalogue_for


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ledger-dsn", default=None, help="the evidence ledger (default: $DRILLBOOK_LEDGER_DSN)"
    )
    parser.add_argument(
        "--catalogue",
        "--config",
        dest="catalogue",
        default=None,
        help="catalogue file (default: $DRILLBOOK_CATALOGUE or include/drills.yaml)",
    )
    parser.add_argument("--now", default=None, help="assess as of this ISO time (default: now)")


def configure_watchdog_parser(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.set_defaults(func=main_watchdog)


def configure_digest_parser(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument(
        "--schedule",
        default="@daily",
        help="the digest preset (@daily, @weekly, @monthly, @quarterly...) or 5-field cron whose period "
        "to report (default: @daily)",
    )
    parser.set_defaults(func=main_digest)


def _setup(args: argparse.Namespace, dag_id: str) -> tuple[Any, Any, Any, Any, datetime]:
    from drillbook.cli.config import resolver_of, settings_of
    from drillbook.errors import ConnectionNotConfigured
    from drillbook.ledger.query import parse_when
    from drillbook.ledger.store import Ledger
    from drillbook.run.context import RunContext

    dsn = args.ledger_dsn or settings_of(args).ledger_dsn
    if not dsn:
        raise ConnectionNotConfigured("no ledger: pass --ledger-dsn or set DRILLBOOK_LEDGER_DSN")
    catalogue = load_catalogue_for(args)
    ledger = Ledger(dsn, spool=settings_of(args).spool_file)
    now = parse_when(args.now, option="--now") if args.now else datetime.now(UTC)
    ctx = RunContext(
        dag_id=dag_id,
        run_id=f"cli__{now:%Y%m%dT%H%M%S}__{uuid.uuid4().hex[:8]}",
        task_id="cli",
        trigger="manual",
    )
    return catalogue, ledger, resolver_of(args).notifier(catalogue=catalogue, ledger=ledger), ctx, now


def main_watchdog(args: argparse.Namespace) -> int:
    from drillbook.reporting.watchdog import run_watchdog
    from drillbook.safety.redact import redact

    catalogue, ledger, notifier, ctx, now = _setup(args, "dr_watchdog")
    with ledger:
        run = run_watchdog(catalogue, ledger=ledger, notifier=notifier, ctx=ctx, now=now)
    open_count = 0
    for name, incidents in run.incidents.items():
        for incident in incidents:
            open_count += 1
            print(redact(f"  {incident.code:<22} {name}: {incident.message}"))
    owed = sum(len(codes) for codes in run.undelivered.values())
    note = (
        f"; {owed} written to the outbox only (nobody was told; sent once Slack is configured)"
        if owed
        else ""
    )
    print(f"{open_count} open incident(s); {run.posted} message(s) posted{note}", file=sys.stderr)
    redo = run.redelivery
    if redo is not None and redo.owed:
        failed = f"; re-sending failed: {redact(redo.error)}" if redo.error else ""
        print(
            f"{redo.owed} undelivered report(s): {redo.delivered} delivered now, {redo.left} still owed{failed}",
            file=sys.stderr,
        )
    return 1 if open_count else 0


def main_digest(args: argparse.Namespace) -> int:
    from drillbook.catalogue.common import validate_schedule
    from drillbook.cli.config import settings_of
    from drillbook.errors import ConfigurationError
    from drillbook.ledger.checkpoint import CheckpointSettings
    from drillbook.notify.blocks import as_text
    from drillbook.notify.render_digest import render_digest
    from drillbook.reporting.digest import PRESET_NAMES, run_digest
    from drillbook.safety.redact import redact

    try:  # a preset or a 5-field cron, checked before croniter can raise from deep inside the digest
        args.schedule = validate_schedule(args.schedule)
    except ValueError as exc:
        raise ConfigurationError(f"--schedule: {exc}") from None
    catalogue, ledger, notifier, ctx, now = _setup(
        args, f"dr_digest__{PRESET_NAMES.get(args.schedule, 'custom')}"
    )
    with ledger:
        card = run_digest(
            catalogue,
            ledger=ledger,
            notifier=notifier,
            ctx=ctx,
            schedule=args.schedule,
            now=now,
            checkpoints=CheckpointSettings.from_settings(settings_of(args)),
        )
    print(redact(as_text(render_digest(card).blocks)))
    return 0 if card.ledger_ok is not False else 1
