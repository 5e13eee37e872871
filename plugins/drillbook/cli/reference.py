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
  schema change shows up as a readable diff in review.
"""

from __future__ import annotations

import argparse
import os
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
    w.add_argument("--output", "-o", required=True, help="reference file to write, e.g. include/references/shop.json")
    w.set_defaults(func=main)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Write the reference; exit 0 on success, 2 when the DSN is missing or the database unreachable."""
    import psycopg

    from drillbook.drills.backup_restore.verify.structure import write_reference
    from drillbook.pg import connect, describe, parse
    from drillbook.redact import redact

    if getattr(args, "reference_command", None) != "write":
        print("drillbook reference: expected an action: write", file=sys.stderr)
        return 2
    dsn = args.dsn or os.environ.get(ENV_DSN)
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
    relations = structure["relations"]
    tables = sum(1 for body in relations.values() if body["kind"] == "table")
    print(
        f"wrote {output}: {tables} tables, {len(relations) - tables} views/other relations, "
        f"{len(structure['sequences'])} sequences, {len(structure['functions'])} functions "
        f"from {describe(dsn)}"
    )
    return 0
