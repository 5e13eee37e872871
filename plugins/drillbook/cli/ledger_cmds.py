"""``drillbook ledger init`` and ``drillbook evidence verify|list|export|show``.

Rules this module enforces:
- the ledger DSN comes from ``--ledger-dsn`` or ``DRILLBOOK_LEDGER_DSN``; when
  neither is set the command says so naming both and exits 2 (prefer the
  environment variable: a password in argv is visible to every local user);
- ``evidence verify`` and its exit codes live in ``drillbook.cli.evidence_verify``;
- exports stream to the file or stdout and never hold the table in memory;
  a failed export removes its partial output file;
- nothing here imports psycopg at module import (the parser is built eagerly).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drillbook.cli.config import settings_of
from drillbook.cli.evidence_verify import cmd_evidence_verify
from drillbook.cli.ledger_base import DSN_ENV, _err, _guarded, _ledger

_LIST_DEFAULT_LIMIT = 50


def _utc(moment: Any) -> str:
    from datetime import UTC

    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _add_dsn(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ledger-dsn",
        default=None,
        help=f"PostgreSQL DSN of the evidence ledger (default: ${DSN_ENV}; prefer the variable, argv is visible to others)",
    )


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="records at or after this ISO date/datetime (UTC when no zone)")
    parser.add_argument("--until", help="records before this datetime; a bare date includes that whole day")
    parser.add_argument("--control", help="only records giving evidence for this control id, e.g. SOC2:A1.2")
    parser.add_argument("--drill", help="only this drill (catalogue name)")
    parser.add_argument("--kind", help="only this drill kind, e.g. backup_restore")
    parser.add_argument("--verdict", help="only this verdict: PASS, FAIL, ERROR or SKIPPED")
    parser.add_argument(
        "--type",
        dest="record_type",
        choices=("drill", "notification", "watchdog", "digest"),
        help="only this record type",
    )


def _lazy(name: str) -> Callable[[argparse.Namespace], int]:
    """A handler from ``drillbook.cli.ledger_trust``, imported when the command runs."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        return int(getattr(importlib.import_module("drillbook.cli.ledger_trust"), name)(args))

    return run


def _filter(args: argparse.Namespace) -> Any:
    from drillbook.ledger.query import Filter

    return Filter.build(
        since=args.since,
        until=args.until,
        control=args.control,
        drill=args.drill,
        kind=args.kind,
        verdict=args.verdict,
        record_type=args.record_type,
    )


# -- ledger init ----------------------------------------------------------------------------------
@_guarded
def cmd_ledger_init(args: argparse.Namespace) -> int:
    """Create or migrate the ledger schema."""
    from drillbook.ledger.schema import LATEST_VERSION

    with _ledger(args) as ledger:
        applied = ledger.init_schema()
        where = ledger.where
    if applied:
        print(
            f"ledger initialised at {where}: schema version {LATEST_VERSION} (applied {', '.join(map(str, applied))})"
        )
    else:
        print(f"ledger at {where} already at schema version {LATEST_VERSION}; nothing to do")
    return 0


@_guarded
def cmd_ledger_status(args: argparse.Namespace) -> int:
    """Show the schema version, record count and head of the chain."""
    with _ledger(args) as ledger:
        version = ledger.schema_version()
        if version == 0:
            print(f"ledger at {ledger.where}: not initialised (run `drillbook ledger init`)")
            return 2
        head = ledger.head()
        count = ledger.count()
        where = ledger.where
    head_text = f"head seq={head.seq} {head.hash} at {_utc(head.recorded_at)}" if head else "empty"
    print(f"ledger at {where}: schema version {version}, {count} records, {head_text}")
    print_spool_state(settings_of(args).spool_file)
    return 0


def print_spool_state(path: Path) -> None:
    from drillbook.ledger.spool import EvidenceSpool

    spool = EvidenceSpool(path)
    state = spool.read()
    if state.pending:
        print(
            f"evidence spool {spool.path}: {len(state.pending)} record(s) waiting for the ledger; "
            "run `drillbook ledger flush`"
        )
    if state.torn:
        print(
            f"evidence spool {spool.path}: {len(state.torn)} unreadable line(s) (torn writes?); "
            "`drillbook ledger flush` moves them to the .rejected file"
        )
    rejected = spool.rejected()
    if rejected:
        print(
            f"QUARANTINED: {rejected} evidence spool entr{'y' if rejected == 1 else 'ies'} could not be replayed "
            f"and wait for an auditor in {spool.rejected_path} (each with its reason); record them by hand or "
            "re-run the drill, then move the file away"
        )


def configure_ledger_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``init`` and ``status`` under ``drillbook ledger``."""
    sub = parser.add_subparsers(dest="ledger_command", metavar="COMMAND", required=True)
    p = sub.add_parser("init", help="create or migrate the evidence ledger schema (idempotent)")
    _add_dsn(p)
    p.set_defaults(func=cmd_ledger_init)
    p = sub.add_parser("status", help="schema version, record count, chain head and spooled evidence")
    _add_dsn(p)
    p.set_defaults(func=cmd_ledger_status)
    p = sub.add_parser(
        "flush", help="replay evidence spooled while the ledger was unreachable (in order, idempotent)"
    )
    _add_dsn(p)
    p.add_argument(
        "--spool", default=None, help="spool file (default: $DRILLBOOK_SPOOL, else next to the outbox)"
    )
    p.set_defaults(func=_lazy("cmd_ledger_flush"))


# -- evidence list --------------------------------------------------------------------------------
def _print_lines(batches: Any) -> int:
    """Write the table's lines (header, rule, one per record) as they stream in; the number of records."""
    out, lines = sys.stdout, 0
    for batch in batches:
        lines += batch.count("\n")
        out.write(batch)
    return max(lines - 2, 0)  # the first two lines are the header and its rule


@_guarded
def cmd_evidence_list(args: argparse.Namespace) -> int:
    """Print matching records as a table, newest first."""
    from drillbook.ledger.export import list_lines

    flt = _filter(args)
    limit = None if args.limit == 0 else args.limit
    with _ledger(args) as ledger:
        count = _print_lines(
            list_lines(ledger.connection, flt=flt, limit=limit, newest_first=not args.oldest_first)
        )
    more = f" (at most {limit}; --limit 0 for all)" if limit and count >= limit else ""
    print(f"{count} record{'s' if count != 1 else ''}{more}", file=sys.stderr)
    return 0


# -- evidence export --------------------------------------------------------------------------------
@_guarded
def cmd_evidence_export(args: argparse.Namespace) -> int:
    """Stream matching records as CSV or JSON, with hashes for offline re-verification."""
    from drillbook.ledger.export import export_records

    flt = _filter(args)
    with _ledger(args) as ledger:
        conn = ledger.connection
        if not args.output:
            count = export_records(conn, sys.stdout.buffer, flt=flt, fmt=args.format)
            sys.stdout.buffer.flush()
            print(f"exported {count} records", file=sys.stderr)
            return 0
        target = Path(args.output)
        partial = target.with_name(target.name + ".partial")
        try:
            with partial.open("wb") as fh:
                count = export_records(conn, fh, flt=flt, fmt=args.format)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    print(
        f"exported {count} records to {target} ({args.format}); re-verify with "
        f"`drillbook evidence verify --file {target}`",
        file=sys.stderr,
    )
    return 0


# -- evidence show ----------------------------------------------------------------------------------
@_guarded
def cmd_evidence_show(args: argparse.Namespace) -> int:
    """Print one record in full."""
    with _ledger(args) as ledger:
        record = ledger.get(args.seq)
    if record is None:
        _err(f"no evidence record with seq={args.seq}")
        return 2
    if args.json:
        from drillbook.ledger.canonical import format_ts

        doc = {name: getattr(record, name) for name in record.__dataclass_fields__ if name != "created"}
        doc["recorded_at"] = format_ts(record.recorded_at)
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return 0
    res = record.result
    print(f"record seq={record.seq}  {record.record_type}  recorded {_utc(record.recorded_at)}")
    print(f"  drill     {record.kind}/{record.drill}  target {record.target}")
    print(f"  verdict   {record.verdict}")
    print(f"  controls  {', '.join(record.controls) or '-'}")
    print(
        f"  run       dag_id={record.dag_id} run_id={record.run_id} task_id={record.task_id} "
        f"map_index={record.map_index} try={record.try_number} trigger={record.trigger}"
    )
    measurements = res.get("measurements", {})
    for key in ("rto_seconds", "rpo_seconds"):
        if measurements.get(key) is not None:
            objective = res.get("objectives", {}).get(key.replace("_seconds", ""))
            print(f"  {key:<9} {measurements[key]}" + (f" (objective {objective})" if objective else ""))
    for phase in res.get("phases", []):
        print(
            f"  phase     {phase.get('name')}: {phase.get('status')} {phase.get('seconds')}s {phase.get('detail', '')}"
        )
    for item in res.get("findings", []):
        print(f"  finding   {item.get('code')} [{item.get('severity')}] {item.get('message')}")
        print(f"            fix: {item.get('hint')}")
    print(f"  prev_hash {record.prev_hash}")
    print(f"  hash      {record.hash}")
    return 0


def configure_evidence_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``verify``, ``list``, ``export``, ``show`` and the auditors' views (``drillbook.cli.auditor``) under ``drillbook evidence``."""
    sub = parser.add_subparsers(dest="evidence_command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "verify",
        help="walk the hash chain and compare it with the newest checkpoint; exit 1 on "
        "tampering, 3 when it could not verify",
    )
    _add_dsn(p)
    p.add_argument("--file", help="re-verify an export file (CSV or JSON) offline instead of the database")
    p.add_argument(
        "--expect-head",
        metavar="SEQ:HASH",
        help="head printed by an earlier verify (SEQ:HASH, or a hash prefix of >= 12 hex digits)",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="re-hash every record from seq 1 (default: only records after the newest checkpoint signed "
        "with the trusted key; without one the walk is full anyway)",
    )
    p.add_argument(
        "--pack", help="verify an evidence pack (zip) offline: no database or configuration needed"
    )
    p.add_argument(
        "--public-key",
        help="with --pack: the Ed25519 public key (hex, base64, PEM or a file) the pack must be signed by",
    )
    p.set_defaults(func=cmd_evidence_verify)

    from drillbook.cli import auditor

    auditor.configure(sub)

    p = sub.add_parser("checkpoint", help="sign the chain head (Ed25519) and store the checkpoint")
    _add_dsn(p)
    p.set_defaults(func=_lazy("cmd_evidence_checkpoint"))

    p = sub.add_parser("list", help="list evidence records as a table, newest first")
    _add_dsn(p)
    _add_filters(p)
    p.add_argument(
        "--limit", type=int, default=_LIST_DEFAULT_LIMIT, help="at most N records (0 = all; default 50)"
    )
    p.add_argument("--oldest-first", action="store_true", help="chain order instead of newest first")
    p.set_defaults(func=cmd_evidence_list)

    p = sub.add_parser("export", help="export evidence records as CSV or JSON with their hashes")
    _add_dsn(p)
    _add_filters(p)
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="output format (default csv)")
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_evidence_export)

    p = sub.add_parser("show", help="print one evidence record in full")
    _add_dsn(p)
    p.add_argument("seq", type=int, help="the record's seq number")
    p.add_argument("--json", action="store_true", help="print the stored record as JSON")
    p.set_defaults(func=cmd_evidence_show)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m drillbook.cli.ledger_cmds evidence verify``), for tests and scripts."""
    parser = argparse.ArgumentParser(prog="drillbook")
    sub = parser.add_subparsers(dest="command", required=True)
    configure_ledger_parser(sub.add_parser("ledger"))
    configure_evidence_parser(sub.add_parser("evidence"))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
