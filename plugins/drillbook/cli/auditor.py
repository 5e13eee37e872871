"""``drillbook evidence controls|coverage|pack`` and ``evidence verify --pack``: the auditors' views in a terminal.

Rules this module enforces:
- the period is ``--since`` (inclusive) to ``--until`` (a bare date includes that whole day,
  as everywhere in ``drillbook evidence``); the default is the last 90 days up to now;
- ``controls`` and ``pack`` verify the chain first (``--no-verify`` skips it): over a chain that
  does not verify, or was not checked, nothing is VERIFIED (UNVERIFIABLE instead);
- exit codes (``drillbook.cli.exits``): 0 every control VERIFIED or NOT DUE / every in-scope
  item has passing evidence / the pack verifies; 1 any exception, missing evidence or a pack
  that does not verify (each problem named); 2 bad input, an unreachable ledger, or a pack that
  is intact but UNSIGNED (its origin could not be verified);
- ``verify --pack`` needs no database and no configuration: it reads only the file and the key.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from drillbook.cli.config import settings_of
from drillbook.cli.ledger_base import EXIT_OK, EXIT_TAMPER, EXIT_USAGE, _err, _guarded, _ledger

DEFAULT_DAYS = 90


def _period(args: argparse.Namespace) -> tuple[datetime, datetime]:
    from drillbook.ledger.query import Filter

    flt = Filter.build(since=args.since, until=args.until)
    end = flt.until or datetime.now(UTC)
    start = flt.since or end - timedelta(days=DEFAULT_DAYS)
    if end <= start:
        from drillbook.errors import ConfigurationError

        raise ConfigurationError(f"--until {end.isoformat()} is not after --since {start.isoformat()}")
    return start, end


def _verified(ledger: Any, args: argparse.Namespace) -> str | None:
    """None when the chain verifies; else why nothing may show VERIFIED."""
    if args.no_verify:
        return "ledger not verified (--no-verify)"
    from drillbook.ledger.checkpoint import CheckpointSettings

    return _said(ledger.verify(checkpoints=CheckpointSettings.from_settings(settings_of(args))))


def _said(report: Any) -> str | None:
    """Print the verify outcome to stderr; None when the chain verifies, else why nothing may show VERIFIED."""
    if report is None:
        return "ledger not verified (--no-verify)"
    if report.ok:
        print(
            f"ledger verified: {report.checked} records, head {report.head_seq}:{report.head_hash}",
            file=sys.stderr,
        )
        return None
    print(
        f"LEDGER DOES NOT VERIFY at seq={report.first_bad_seq} ({report.reason}): {report.message}",
        file=sys.stderr,
    )
    return f"ledger chain broken at seq {report.first_bad_seq}"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    from drillbook.safety.redact import redact

    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print(redact("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()))


@_guarded
def cmd_controls(args: argparse.Namespace) -> int:
    """One row per control: expected runs, runs, passes, exceptions with their dates, status in words."""
    from drillbook.catalogue import load_catalogue
    from drillbook.evidence.controls import CONTROLS_HEADER, NOT_DUE, VERIFIED, control_rows, table_rows

    catalogue = load_catalogue(args.catalogue, gx_suites=settings_of(args).suite_check_for("cli"))
    start, end = _period(args)
    with _ledger(args) as ledger:
        unverifiable = _verified(ledger, args)
        rows = control_rows(
            ledger.connection, catalogue, start=start, end=end, unverifiable=unverifiable, only=args.control
        )
    print(f"controls {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC")
    _table(CONTROLS_HEADER, table_rows(rows))
    for row in rows:
        print(f"\n{row.control}: {row.status_words}")
        for exc in row.exceptions[: args.max_exceptions]:
            print(f"  {exc.describe()}")
        if len(row.exceptions) > args.max_exceptions:
            print(
                f"  … and {len(row.exceptions) - args.max_exceptions} more (--max-exceptions, or `evidence pack` for all)"
            )
    return EXIT_OK if all(r.status in (VERIFIED, NOT_DUE) for r in rows) else EXIT_TAMPER


@_guarded
def cmd_coverage(args: argparse.Namespace) -> int:
    """Every in-scope database, certificate source and alert path, those without passing evidence first."""
    from drillbook.catalogue import load_catalogue
    from drillbook.evidence.coverage import COVERAGE_HEADER, coverage, table_rows

    catalogue = load_catalogue(args.catalogue, gx_suites=settings_of(args).suite_check_for("cli"))
    start, end = _period(args)
    with _ledger(args) as ledger:
        items = coverage(ledger.connection, catalogue, start=start, end=end)
    print(f"coverage {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC")
    _table(COVERAGE_HEADER, table_rows(items))
    missing = sum(1 for i in items if not i.covered)
    print(f"{len(items)} in scope, {missing} without passing evidence in the period", file=sys.stderr)
    return EXIT_TAMPER if missing else EXIT_OK


@_guarded
def cmd_pack(args: argparse.Namespace) -> int:
    """Write the signed evidence pack of one control and period."""
    from drillbook.catalogue import load_catalogue
    from drillbook.evidence.pack import build_pack
    from drillbook.ledger.checkpoint import CheckpointSettings

    catalogue = load_catalogue(args.catalogue, gx_suites=settings_of(args).suite_check_for("cli"))
    start, end = _period(args)
    settings = CheckpointSettings.from_settings(settings_of(args))
    with _ledger(args) as ledger:  # the pages' download runs this build_pack (drillbook.web.pack_download)
        result, report = build_pack(
            ledger,
            catalogue,
            control=args.control,
            start=start,
            end=end,
            output=Path(args.output),
            settings=settings,
            seed=args.seed,
            verify=not args.no_verify,
        )
    _said(report)
    how = (
        f"signed by key {result.key_id}"
        if result.signed
        else (
            "UNSIGNED: no checkpoint key configured ($DRILLBOOK_CHECKPOINT_KEY); verify will not accept it as authentic"
        )
    )
    print(
        f"wrote {result.path}: {args.control} {start:%Y-%m-%d} → {end:%Y-%m-%d}, {result.records} records, "
        f"{result.population} expected occurrences, status {result.status}"
    )
    print(
        f"sample: {len(result.sample)} occurrences, seed {result.seed} (rows {', '.join(map(str, result.sample))})"
    )
    print(f"head seq={result.head_seq} {result.head_hash}; manifest {how}")
    print(f"check it anywhere: drillbook evidence verify --pack {result.path} --public-key KEY")
    return EXIT_OK if result.signed else EXIT_USAGE


def cmd_verify_pack(args: argparse.Namespace) -> int:
    """Verify a pack offline and say what that proves."""
    from drillbook.errors import ConfigurationError
    from drillbook.evidence.pack_verify import NotAPack, proof_statements, verify_pack

    key = args.public_key
    if key and Path(key).is_file():
        key = Path(key).read_text(encoding="utf-8", errors="replace")
    try:
        report = verify_pack(args.pack, public_key=key)
    except (NotAPack, ConfigurationError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    for note in report.notes:
        print(f"  {note}")
    if report.problems:
        print(f"pack {args.pack} DOES NOT VERIFY: {len(report.problems)} problem(s)")
        for problem in report.problems:
            print(f"  - {problem}")
        return EXIT_TAMPER
    proves, not_proved = proof_statements(report)
    state = "OK" if report.signed else "INTACT BUT UNSIGNED"
    print(
        f"pack {args.pack} {state}: control {report.manifest.get('control')}, {report.manifest.get('since')} → "
        f"{report.manifest.get('until')}, {report.records} records"
    )
    print("this proves:")
    for line in proves:
        print(f"  - {line}")
    print("this does not prove:")
    for line in not_proved:
        print(f"  - {line}")
    if not report.signed:
        return EXIT_USAGE
    if not report.trusted_key:
        print(
            f"  note: the manifest's key {report.key_id} was taken from the pack; pass --public-key to check who signed it",
            file=sys.stderr,
        )
    return EXIT_OK


def _period_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", help=f"period start, ISO date/datetime (default: {DEFAULT_DAYS} days before --until)"
    )
    parser.add_argument("--until", help="period end; a bare date includes that whole day (default: now)")
    parser.add_argument(
        "--catalogue",
        "--config",
        dest="catalogue",
        default=None,
        help="catalogue file (default: $DRILLBOOK_CATALOGUE or include/drills.yaml)",
    )
    parser.add_argument(
        "--ledger-dsn", default=None, help="evidence ledger DSN (default: $DRILLBOOK_LEDGER_DSN)"
    )


def configure(sub: Any) -> None:
    """Add ``controls``, ``coverage`` and ``pack`` under ``drillbook evidence``."""
    p = sub.add_parser(
        "controls", help="one row per control: expected runs, runs, passes, exceptions, status"
    )
    _period_args(p)
    p.add_argument("--control", help="only this control id")
    p.add_argument(
        "--no-verify", action="store_true", help="skip the chain walk (then nothing shows VERIFIED)"
    )
    p.add_argument(
        "--max-exceptions", type=int, default=20, help="exceptions listed per control (default 20)"
    )
    p.set_defaults(func=cmd_controls)

    p = sub.add_parser("coverage", help="what is in scope against what has passing evidence; missing first")
    _period_args(p)
    p.set_defaults(func=cmd_coverage)

    p = sub.add_parser("pack", help="write a signed evidence pack (zip) of one control and period")
    _period_args(p)
    p.add_argument("--control", required=True, help="the control id, e.g. SOC2:A1.2")
    p.add_argument("--output", "-o", required=True, help="the zip file to write")
    p.add_argument("--seed", type=int, default=None, help="sample seed (default: random; printed and stored)")
    p.add_argument(
        "--no-verify", action="store_true", help="skip the chain walk (then nothing shows VERIFIED)"
    )
    p.set_defaults(func=cmd_pack)
