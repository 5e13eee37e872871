"""``drillbook reference write``: record a database's structure as the backup-restore reference.

Rules this module enforces:
- the DSN comes from ``--dsn`` or ``DRILLBOOK_REFERENCE_DSN``; the password in
  it is registered as a secret and never printed (the output names the
  database as ``host:port/dbname``); prefer the environment variable, as
  arguments are visible in process listings;
- the database is only read: the session is READ ONLY, so pointing this at
  production is safe;
- the file is canonical JSON (sorted keys, two-space indent, trailing
  newline): writing it twice from the same schema gives the same bytes, so a
  schema change shows up as a readable diff in review;
- ``--from-backup FILE`` needs no live database: the backup's schema is
  restored into a private throwaway cluster (``verify/reference_cluster.py``)
  and read there; ``--dsn`` and ``--from-backup`` exclude each other; a plain
  dump is judged whole by the statement filter first and restored whole
  (``verify/reference_plain.py``); ``--database`` picks the database of a
  dump that creates several.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ENV_DSN = "DRILLBOOK_REFERENCE_DSN"


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add ``write`` (and its options) under ``drillbook reference``."""
    sub = p.add_subparsers(dest="reference_command", metavar="ACTION", required=True)
    w = sub.add_parser(
        "write",
        help="read the structure of a live database and write it as a reference file",
        description="Read tables, columns, indexes, constraints, sequences, views, materialized views "
        "and functions of the user schemas and write them as canonical JSON.",
    )
    w.add_argument("--dsn", help=f"database to read (default: ${ENV_DSN}); read-only session")
    w.add_argument(
        "--from-backup",
        metavar="FILE",
        default=None,
        help="build the reference from a backup restored into a throwaway cluster: a pg_dump archive "
        "(-Fc/-Fd/-Ft, schema only) or a plain dump / pg_dumpall file (.sql, .sql.gz; judged by the "
        "statement filter, restored whole)",
    )
    w.add_argument(
        "--database",
        metavar="NAME",
        default=None,
        help="with --from-backup of a plain dump that creates several databases (pg_dumpall): the one to describe",
    )
    w.add_argument(
        "--output", "-o", required=True, help="reference file to write, e.g. include/references/shop.json"
    )
    w.set_defaults(func=main)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Write the reference; exit 0 on success, 2 when the DSN is missing or the database unreachable."""
    import psycopg

    from drillbook.drills.backup_restore.verify.structure import write_reference
    from drillbook.resources.pg import connect, describe, parse
    from drillbook.safety.redact import redact

    if getattr(args, "reference_command", None) != "write":
        print("drillbook reference: expected an action: write", file=sys.stderr)
        return 2
    if getattr(args, "from_backup", None):
        return _from_backup(args)
    from drillbook.cli.config import settings_of

    dsn = args.dsn or settings_of(args).reference_dsn
    if not dsn:
        print(f"drillbook reference write: give --dsn or set {ENV_DSN}", file=sys.stderr)
        return 2
    parse(dsn)  # registers the password as a secret before anything can print it
    output = Path(args.output)
    try:
        with connect(dsn, autocommit=True, application_name="drillbook-reference") as conn:
            conn.execute("set default_transaction_read_only = on")
            structure = write_reference(conn, output)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(redact(f"drillbook reference write: cannot read {describe(dsn)}: {first}"), file=sys.stderr)
        return 2
    print(f"wrote {output}: {summary(structure)} from {describe(dsn)}")
    return 0


def summary(structure: dict) -> str:
    """``4 tables, 2 views/other relations, 3 sequences, ...``: what the reference holds."""
    relations = structure["relations"]
    tables = sum(1 for body in relations.values() if body["kind"] == "table")
    text = (
        f"{tables} tables, {len(relations) - tables} views/other relations, {len(structure['sequences'])} sequences, "
        f"{len(structure['functions'])} functions"
    )
    extra = [
        f"{len(structure[k])} {k.replace('_', ' ')}"
        for k in ("triggers", "policies", "types", "grants", "extensions")
        if k in structure
    ]
    return text + (", " + ", ".join(extra) if extra else "")


def _from_backup(args: argparse.Namespace) -> int:
    from drillbook.cli.config import settings_of
    from drillbook.drills.backup_restore.verify.reference_cluster import (
        ReferenceFromBackupError,
        reference_from_backup,
    )
    from drillbook.drills.backup_restore.verify.structure import save_reference
    from drillbook.safety.redact import redact

    if args.dsn:
        print("drillbook reference write: give --dsn or --from-backup, not both", file=sys.stderr)
        return 2
    source = Path(args.from_backup)
    if not source.exists():
        print(f"drillbook reference write: --from-backup {str(source)!r}: file not found", file=sys.stderr)
        return 2
    try:
        structure, note = reference_from_backup(
            source, database=args.database, timeout_s=settings_of(args).reference_timeout
        )
    except ReferenceFromBackupError as exc:
        print(redact(f"drillbook reference write: {exc}"), file=sys.stderr)
        return 2
    output = Path(args.output)
    save_reference(structure, output)
    print(f"wrote {output}: {summary(structure)}; {note}")
    return 0
