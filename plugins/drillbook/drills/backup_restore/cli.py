"""``drillbook run backup-restore``: restore the newest backup into scratch, verify it, measure RTO and RPO, now.

Two ways in: ``--drill NAME`` runs a catalogue drill (its source, scratch and
AWS connections are read from ``AIRFLOW_CONN_<ID>`` / ``DRILLBOOK_CONN_<ID>``
without importing Airflow), or ad hoc ``--backup PATH_OR_S3_URL --scratch-dsn
DSN [--source-dsn DSN] [--config FILE]`` where FILE holds drill settings
(objectives, restore, verify) as a YAML mapping, or is a catalogue.

Rules: phases are printed as they complete; DSNs never appear in output
(``pg.describe`` and ``redact``); the exit code is the verdict's (0 PASS,
1 FAIL, 2 ERROR; with ``--fail-on SEVERITY`` the threshold's, ERROR still 2
and the verdict recorded unchanged; ``--junit FILE`` writes JUnit XML as
well; 128 + N when stopped by signal N, after recording a
DRILL_INTERRUPTED result); the drill's own leftover scratch databases are
reaped first (``SCRATCH_REAPED``); with a ledger (``--ledger-dsn`` / ``DRILLBOOK_LEDGER_DSN``)
the result is recorded as a manual run before anyone is notified.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from drillbook.catalogue.common import resolve_relative
from drillbook.cli import common
from drillbook.cli.config import load_catalogue_for, resolver_of, settings_of
from drillbook.drills.backup_restore import lifetime
from drillbook.errors import ConfigurationError

ADHOC_NAME = "adhoc"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--drill", help="name of a backup_restore drill in the catalogue")
    parser.add_argument(
        "--backup",
        metavar="PATH_OR_S3_URL",
        help="ad hoc: a dump file, a directory of dumps, 's3://bucket/prefix/' or 'live'",
    )
    parser.add_argument(
        "--scratch-dsn",
        default=None,
        help="ad hoc: scratch server DSN (maintenance DB); default $DRILLBOOK_SCRATCH_DSN; "
        "prefer the password in PGPASSWORD or ~/.pgpass",
    )
    parser.add_argument(
        "--source-dsn",
        default=None,
        help="ad hoc: source DSN (read only: live dumps, and the guard refuses a scratch equal to it)",
    )
    parser.add_argument("--pattern", default=None, help="ad hoc: glob the backup's file/key name must match")
    parser.add_argument(
        "--work-dir", default=None, help="where S3 objects are downloaded (default: a temporary directory)"
    )
    common.add_common_run_arguments(parser)  # --json, --ledger-dsn, --catalogue/--config, --no-notify
    common.add_report_arguments(parser)  # --fail-on SEVERITY, --junit FILE


def _settings_file(path: str) -> dict[str, Any]:
    from drillbook.catalogue.reader import FileProblem, read_yaml

    try:  # the catalogue's bounded reader: size, UTF-8, depth, alias expansion, YAML 1.2 booleans
        data = read_yaml(path)[1] or {}
    except FileProblem as exc:
        raise ConfigurationError(f"cannot read settings file: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"settings file {path!r} must hold a mapping of drill keys, got {type(data).__name__}"
        )
    return data


def _command_line_location(raw: str) -> str:
    """A local ``--backup`` path made absolute against the working directory.

    A path typed on the command line is relative to where the command runs (as
    a shell user expects); only paths written in a catalogue or settings file
    are relative to that file. S3 URLs and ``live`` are left as they are.
    """
    if raw.startswith("s3://") or raw == "live":
        return raw
    return str(resolve_relative(raw, Path.cwd()))


def _ad_hoc_drill(args: argparse.Namespace) -> tuple[Any, Path | None]:
    """A BackupRestoreDrill from --backup and an optional settings file (or the one drill of a catalogue)."""
    from pydantic import ValidationError

    from drillbook.drills.backup_restore.catalogue import BackupRestoreDrill

    data: dict[str, Any] = {}
    base_dir = None
    if args.catalogue:
        data = _settings_file(args.catalogue)
        base_dir = Path(args.catalogue).resolve().parent
        if "drills" in data:  # a whole catalogue: take its one backup_restore drill
            drills = [
                d
                for d in data.get("drills") or []
                if isinstance(d, dict) and d.get("kind") == "backup_restore"
            ]
            if len(drills) != 1:
                raise ConfigurationError(
                    f"{args.catalogue!r} holds {len(drills)} backup_restore drills; name one with --drill"
                )
            data = dict(drills[0])
    data.setdefault("name", ADHOC_NAME)
    data["kind"] = "backup_restore"
    data.setdefault("schedule", "@daily")
    data.setdefault("objectives", {"rto": "4h", "rpo": "26h"})
    backup = dict(data.get("backup") or {})
    backup["location"] = _command_line_location(args.backup)
    if args.pattern:
        backup["pattern"] = args.pattern
    if backup["location"].startswith("s3://"):
        backup.setdefault("connection", "aws_default")
    data["backup"] = backup
    data.setdefault("scratch", {"connection": "adhoc_scratch"})
    if args.source_dsn:
        data.setdefault("source", {"connection": "adhoc_source"})
    try:
        return BackupRestoreDrill.model_validate(data), base_dir
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"invalid ad hoc drill settings: {problems}") from None


def s3_client_for(conn_id: str | None, resolver: Any = None) -> Any:
    """A boto3 S3 client for an AWS connection (the resolver's reading: endpoint_url, region, keys), else boto's defaults."""
    if resolver is None:
        from drillbook.resources.resolver import EnvConnections, Resolver

        resolver = Resolver(EnvConnections())
    return resolver.aws(conn_id).client("s3")


def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    if args.drill and args.backup:
        raise ConfigurationError("give --drill NAME or --backup PATH_OR_S3_URL, not both")
    if args.drill:
        from drillbook.cli.config import resolver_of
        from drillbook.drills.backup_restore.catalogue import BackupRestoreDrill

        catalogue = load_catalogue_for(args)
        drill = catalogue.drill(args.drill)
        if not isinstance(drill, BackupRestoreDrill):
            raise ConfigurationError(f"drill {args.drill!r} is a {drill.kind} drill, not backup_restore")
        return {
            "drill": drill,
            "base_dir": catalogue.base_dir,
            # a physical backup recovers into a private cluster: no scratch server to resolve
            "scratch_dsn": ""
            if drill.backup.is_physical
            else (args.scratch_dsn or resolver_of(args).postgres_dsn(drill.scratch.connection)),
            "source_dsn": args.source_dsn
            or (resolver_of(args).postgres_dsn(drill.source.connection) if drill.source else None),
        }
    if not args.backup:
        raise ConfigurationError("give --drill NAME, or --backup PATH_OR_S3_URL with --scratch-dsn DSN")
    from drillbook.cli.config import settings_of

    scratch = args.scratch_dsn or settings_of(args).scratch_dsn
    if not scratch:
        raise ConfigurationError(
            "ad hoc runs need --scratch-dsn DSN (or $DRILLBOOK_SCRATCH_DSN): the server to restore into"
        )
    drill, base_dir = _ad_hoc_drill(args)
    if drill.backup.is_live and not args.source_dsn:
        raise ConfigurationError("--backup live needs --source-dsn: the database to dump")
    return {"drill": drill, "base_dir": base_dir, "scratch_dsn": scratch, "source_dsn": args.source_dsn}


def _ledger(args: argparse.Namespace) -> Any:
    """The ledger to read the last PASS from (trend, volume drift), when one is configured."""
    dsn = common.ledger_dsn(args)
    if not dsn:
        return None
    from drillbook.ledger.store import Ledger

    return Ledger(dsn, spool=settings_of(args).spool_file)


def main(args: argparse.Namespace) -> int:
    from drillbook.resources import pg

    try:
        resolved = _resolve(args)
    except ConfigurationError as exc:
        return common.fail(str(exc))
    drill = resolved["drill"]
    for key in ("scratch_dsn", "source_dsn"):
        if resolved[key]:
            pg.parse(resolved[key])  # registers the password with redact before anything prints
    uses_s3 = drill.backup.is_s3 or (drill.backup.keep_live_dumps_in or "").startswith("s3://")
    s3 = s3_client_for(drill.backup.connection, resolver_of(args)) if uses_s3 else None
    if not args.json:
        into = (
            "a private cluster"
            if drill.backup.is_physical
            else f"scratch on {pg.describe(resolved['scratch_dsn']).rsplit('/', 1)[0]}"
        )
        common.out(f"backup-restore drill {drill.name!r}: {drill.backup.where} -> {into}")
    try:
        return _run_and_record(args, drill, resolved, s3)
    except lifetime.Interrupted as exc:  # before the drill started (the reaper): nothing to record
        common.out(f"drillbook: stopped by {exc.name} before the drill started", sys.stderr)
        return exc.exit_code


def _run_and_record(args: argparse.Namespace, drill: Any, resolved: dict[str, Any], s3: Any) -> int:
    from drillbook.cli.config import settings_of
    from drillbook.drills.backup_restore.drill import run_backup_restore
    from drillbook.settings import timeouts_of

    # SIGTERM/SIGINT from here on: the drill stops its tools, drops its scratch database and
    # returns a DRILL_INTERRUPTED result, which is recorded below before the process exits.
    with lifetime.stop_on_signals() as stop, tempfile.TemporaryDirectory(prefix="drillbook-restore-") as tmp:
        reaped, unregistered = ([], []) if drill.backup.is_physical else _reap_own_leftovers(drill, resolved)
        result = run_backup_restore(
            drill=drill,
            scratch_dsn=resolved["scratch_dsn"],
            source_dsn=resolved["source_dsn"],
            s3_client=s3,
            work_dir=Path(args.work_dir) if args.work_dir else Path(tmp),
            base_dir=resolved["base_dir"],
            ledger=_ledger(args),
            reaped=reaped,
            unregistered=unregistered,
            on_phase=None if args.json else common.phase_printer(),
            timeouts=timeouts_of(settings_of(args)),
        )
        stop.defer()  # a stop signal from here on waits for the evidence to be recorded
        common.emit(result, as_json=args.json)
        if not args.json and result.details.get("trend"):
            common.out(f"  trend: {result.details['trend']}")
        code = stop.exit_code(common.report_to_ci([result], args))
        if common.ledger_dsn(args):  # a terminal run without a ledger is watched by the person who ran it
            try:
                common.record_cli_result(result, args, notify=not args.no_notify)
            except Exception as exc:
                common.out(
                    f"drillbook: error: the result could not be recorded or reported: {type(exc).__name__}: {exc}",
                    sys.stderr,
                )
                return max(code, 2)
    return code


def _reap_own_leftovers(drill: Any, resolved: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Drop this drill's scratch databases left by a killed run, as the Airflow reap task does."""
    from drillbook.drills.backup_restore.scratch import ScratchGuard

    guard = ScratchGuard(scratch_dsn=resolved["scratch_dsn"], source_dsn=resolved["source_dsn"])
    try:
        report = guard.reap(drill=drill.name, max_age=drill.scratch.max_age)
    except (
        Exception
    ) as exc:  # housekeeping: the drill's own scratch phase reports an unreachable or unsafe server
        common.out(f"drillbook: warning: the reaper could not run: {type(exc).__name__}: {exc}", sys.stderr)
        return [], []
    finally:
        guard.close()
    for name, why in report.failed.items():
        common.out(f"drillbook: warning: leftover scratch database {name!r} not dropped: {why}", sys.stderr)
    return report.dropped, report.unregistered
