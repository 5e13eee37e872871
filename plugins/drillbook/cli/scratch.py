"""``drillbook scratch reap``: drop leftover scratch databases by hand, one drill's or (``--all``) any.

Rules: without ``--all`` only databases registered to the named drill are
taken, as the drill's own runs do at start; ``--all`` takes any registered
database older than ``--max-age``; in both cases a database still in use (its
run holds its lock) is left, and a prefixed database that is not in the
scratch registry is listed, never dropped. Ephemeral clusters (``restore.target:
ephemeral``) left on this machine by killed drills are stopped and removed
with ``--ephemeral`` (alone it needs no scratch server), with ``--all``, and
with ``--drill`` of an ephemeral drill; a cluster a live drill holds is left
(ephemeral_reap.py). Exit 0 when nothing failed, 2 otherwise (including a
guard refusal or an unreachable server).
"""

from __future__ import annotations

import argparse

from drillbook.cli import common
from drillbook.cli.config import load_catalogue_for
from drillbook.errors import ConfigurationError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="scratch_command", metavar="COMMAND", required=True)
    p = sub.add_parser(
        "reap", help="drop leftover scratch databases (a drill's, or with --all any past --max-age)"
    )
    p.add_argument(
        "--drill", help="a backup_restore drill of the catalogue: its scratch server, its leftovers"
    )
    p.add_argument(
        "--all",
        dest="all_drills",
        action="store_true",
        help="take any drill's registered, unused scratch database older than --max-age",
    )
    p.add_argument(
        "--scratch-dsn",
        default=None,
        help="the scratch server's maintenance DB (default: the drill's connection)",
    )
    p.add_argument("--source-dsn", default=None, help="the source, so the guard can refuse to touch it")
    p.add_argument(
        "--max-age",
        default=None,
        help="with --all: minimum age, e.g. 6h (default: the drill's scratch.max_age, else 6h)",
    )
    p.add_argument(
        "--ephemeral",
        action="store_true",
        help="also stop and remove ephemeral clusters left on this machine by killed drills "
        "(alone: only those, no scratch server needed)",
    )
    p.add_argument(
        "--catalogue", "--config", dest="catalogue", default=None, help="catalogue file (for --drill)"
    )
    p.set_defaults(func=main)


def _target(args: argparse.Namespace) -> tuple[str, str | None, str | None, float, bool]:
    """(scratch_dsn, source_dsn, drill name, max_age, ephemeral drill) from the arguments and the catalogue."""
    from drillbook.catalogue.common import parse_duration

    drill_name = source = None
    ephemeral = False
    scratch = args.scratch_dsn
    max_age = 6 * 3600.0
    if args.drill:
        from drillbook.cli.config import resolver_of

        drill = load_catalogue_for(args).drill(args.drill)
        from drillbook.drills.backup_restore.catalogue import BackupRestoreDrill

        if not isinstance(drill, BackupRestoreDrill):
            raise ConfigurationError(f"drill {args.drill!r} is a {drill.kind} drill, not backup_restore")
        drill_name, max_age = drill.name, float(drill.scratch.max_age)
        ephemeral = drill.restore.target == "ephemeral"
        scratch = scratch or resolver_of(args).postgres_dsn(drill.scratch.connection)
        source = args.source_dsn or (
            resolver_of(args).postgres_dsn(drill.source.connection) if drill.source else None
        )
    if not scratch:
        raise ConfigurationError("give --drill NAME (its scratch connection) or --scratch-dsn DSN")
    if not drill_name and not args.all_drills:
        raise ConfigurationError(
            "give --drill NAME to reap that drill's leftovers, or --all to reap any drill's"
        )
    if args.max_age is not None:
        try:
            max_age = parse_duration(args.max_age)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"--max-age: expected a duration such as 6h or 30m, got {args.max_age!r} ({exc})"
            ) from None
    return scratch, source or args.source_dsn, drill_name, max_age, ephemeral


def _reap_clusters() -> int:
    """Report the ephemeral clusters of killed drills removed from this machine; return how many."""
    from drillbook.drills.backup_restore.ephemeral import reap_left_clusters

    removed = reap_left_clusters()
    for root in removed:
        common.out(
            f"removed    {root} (ephemeral cluster left by a killed drill: stopped, directory removed)"
        )
    common.out(f"{len(removed)} ephemeral cluster(s) removed (clusters in use by a live drill are left)")
    return len(removed)


def main(args: argparse.Namespace) -> int:
    from drillbook.drills.backup_restore.scratch import ScratchGuard
    from drillbook.errors import ScratchUnsafe
    from drillbook.resources import pg

    if args.ephemeral and not (args.drill or args.all_drills or args.scratch_dsn):
        _reap_clusters()
        return 0
    try:
        scratch, source, drill, max_age, ephemeral = _target(args)
    except ConfigurationError as exc:
        return common.fail(str(exc))
    if args.ephemeral or args.all_drills or ephemeral:
        _reap_clusters()
    for dsn in (scratch, source):
        if dsn:
            pg.parse(dsn)  # registers the password with redact before anything prints
    guard = ScratchGuard(scratch_dsn=scratch, source_dsn=source)
    try:
        report = guard.reap(drill=drill, max_age=max_age, all_drills=args.all_drills)
    except ScratchUnsafe as exc:
        return common.fail(f"the scratch guard refused: {exc}")
    except Exception as exc:
        if type(exc).__module__.startswith("psycopg"):
            return common.fail(f"scratch server {pg.describe(scratch)}: {exc}")
        raise
    finally:
        guard.close()
    for name in report.migrated:
        common.out(f"registered {name} (v1 marker, owned by the scratch role)")
    for name in report.dropped:
        common.out(f"dropped    {name}")
    for name in report.in_use:
        common.out(f"in use     {name} (its run holds its lock; left)")
    for name in report.unregistered:
        common.out(f"not ours   {name} (scratch prefix, no registry row; not dropped)")
    for name, why in report.failed.items():
        common.out(f"FAILED     {name}: {why}")
    scope = "any drill" if args.all_drills else f"drill {drill!r}"
    common.out(
        f"{len(report.dropped)} dropped, {len(report.in_use)} in use, {len(report.unregistered)} not ours, "
        f"{len(report.failed)} failed ({scope} on {pg.describe(scratch).rsplit('/', 1)[0]})"
    )
    return 2 if report.failed else 0
