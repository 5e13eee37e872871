"""``drillbook run data-quality``: validate a table with a Great Expectations suite, now.

Two ways in: ``--drill NAME`` runs a catalogue drill (its connection is read
from ``AIRFLOW_CONN_<ID>`` / ``DRILLBOOK_CONN_<ID>`` without importing Airflow),
or ad hoc ``--dsn DSN --table schema.table --suite NAME_OR_PATH``. Rule: the
DSN never appears in output (``pg.describe`` and ``redact``), GX is imported by
the drill only, and the exit code is the verdict's (0 PASS, 1 FAIL, 2 ERROR).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from drillbook.cli import common
from drillbook.cli.config import load_catalogue_for
from drillbook.errors import ConfigurationError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--drill", help="name of a data_quality drill in the catalogue")
    parser.add_argument(
        "--dsn",
        default=None,
        help="ad hoc: PostgreSQL DSN (default: $DRILLBOOK_DQ_DSN); prefer a password in PGPASSWORD or ~/.pgpass",
    )
    parser.add_argument(
        "--table",
        default=None,
        help="ad hoc: schema.table to validate (default: the suite's meta.drillbook.table)",
    )
    parser.add_argument(
        "--query", default=None, help="ad hoc: validate the rows of this SQL query instead of a table"
    )
    parser.add_argument(
        "--suite", default=None, help="suite name in the suites directory, or a path to a suite JSON"
    )
    parser.add_argument(
        "--suites-dir", default=None, help="directory of suites (default: expectations/ beside the catalogue)"
    )
    parser.add_argument(
        "--sample", type=int, default=None, help="unexpected values to sample per expectation (default 0)"
    )
    parser.add_argument(
        "--sensitive",
        action="append",
        default=[],
        metavar="COLUMN",
        help="a column never sampled (repeatable)",
    )
    common.add_common_run_arguments(parser)
    common.add_report_arguments(parser)  # --fail-on SEVERITY, --junit FILE


def _suites_dir(args: argparse.Namespace, catalogue: object | None) -> Path:
    from drillbook.drills.data_quality.suites import default_suites_dir

    if args.suites_dir:
        return Path(args.suites_dir)
    return default_suites_dir(catalogue)  # type: ignore[arg-type]


def _from_catalogue(args: argparse.Namespace) -> dict[str, object]:
    from drillbook.cli.config import resolver_of
    from drillbook.drills.data_quality.catalogue import DataQualityDrill

    catalogue = load_catalogue_for(args)
    drill = catalogue.drill(args.drill)
    if not isinstance(drill, DataQualityDrill):
        raise ConfigurationError(f"drill {args.drill!r} is a {drill.kind} drill, not data_quality")
    return {
        "drill_name": drill.name,
        "dsn": args.dsn or resolver_of(args).postgres_dsn(drill.connection),
        "table": args.table or drill.table,
        "query": args.query or drill.query,
        "suite": args.suite or drill.suite,
        "suites_dir": _suites_dir(args, catalogue),
        "sample": args.sample if args.sample is not None else drill.sample_unexpected,
        "sensitive": [*drill.sensitive_columns, *args.sensitive],
        "controls": list(drill.controls),
    }


def _ad_hoc(args: argparse.Namespace) -> dict[str, object]:
    from drillbook.cli.config import settings_of

    dsn = args.dsn or settings_of(args).dq_dsn
    if not dsn or not args.suite:
        raise ConfigurationError(
            "give --drill NAME, or --dsn DSN (or $DRILLBOOK_DQ_DSN) and --suite NAME_OR_PATH"
        )
    if args.table and args.query:
        raise ConfigurationError("give --table or --query, not both")
    table = args.table
    suites_dir = _suites_dir(args, None)
    if not table and not args.query:
        from drillbook.drills.data_quality.suites import SuiteInvalid, load_suite

        try:  # the structural read is enough to learn the suite's table; GX checks it during the run
            table = load_suite(args.suite, suites_dir=suites_dir, gx_check=False).table
        except SuiteInvalid:
            table = None  # the run reports the invalid suite as CONFIG_INVALID
    return {
        "drill_name": "adhoc",
        "dsn": dsn,
        "table": table,
        "query": args.query,
        "suite": args.suite,
        "suites_dir": suites_dir,
        "sample": args.sample or 0,
        "sensitive": list(args.sensitive),
        "controls": [],
    }


def main(args: argparse.Namespace) -> int:
    from drillbook.drills.data_quality import run_data_quality
    from drillbook.resources.pg import parse

    spec = _from_catalogue(args) if args.drill else _ad_hoc(args)
    parse(str(spec["dsn"]))  # registers the password before anything is printed
    if not args.json:
        common.out(
            f"data-quality drill {spec['drill_name']!r}: suite {spec['suite']!r} on {spec['table'] or 'query'}"
        )
    with common.stoppable() as stop:
        result = stop.run(
            lambda: run_data_quality(on_phase=None if args.json else common.phase_printer(), **spec),  # type: ignore[arg-type]
            kind="data_quality",
            drill=str(spec["drill_name"]),
            target=str(spec["table"] or "query"),
            controls=list(spec["controls"]),  # type: ignore[call-overload]
        )
        common.emit(result, as_json=args.json)
        if common.ledger_dsn(args):  # a manual run becomes evidence only when a ledger is configured
            common.record_cli_result(result, args)
        return stop.exit_code(common.report_to_ci([result], args))
