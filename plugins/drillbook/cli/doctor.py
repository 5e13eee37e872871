"""``drillbook doctor``: a pre-flight before the first drill — tools, versions, roles, connectivity, paths.

Rules this module enforces:
- every check prints one line ``ok`` / ``warn`` / ``fail``, what was found,
  and for warn and fail a fix hint; the exit code is 1 when any check failed,
  0 otherwise (warnings do not fail);
- it only reads: connections are opened READ ONLY with a short connect
  timeout, nothing is created or dropped, so it is safe against production;
- DSNs are never printed (``pg.describe``: ``host:port/dbname``), every line
  passes through ``redact``;
- what is checked: the client tools (``pg_restore``, ``psql``, ``pg_dump``)
  and their majors; the catalogue loads; for every ``backup_restore`` drill its
  scratch connection (reachable, the role can CREATEDB and is not a superuser),
  its source connection (reachable, the source major is not newer than the
  newest ``pg_restore``, and the scratch major is the source's), its local
  backup location and its structure reference; the ledger connection.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drillbook.cli import common
from drillbook.cli.config import load_catalogue_for

CONNECT_TIMEOUT_S = 5


@dataclass
class Check:
    status: str  # ok, warn, fail
    name: str
    detail: str
    hint: str = ""


class Doctor:
    """Collects checks and prints each as it is made."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(self, status: str, name: str, detail: str, hint: str = "") -> None:
        check = Check(status, name, detail, hint)
        self.checks.append(check)
        common.out(
            f"  {status:<4}  {name}: {detail}" + (f"\n        fix: {hint}" if hint and status != "ok" else "")
        )

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--catalogue",
        "--config",
        dest="catalogue",
        default=None,
        help="catalogue file (default: $DRILLBOOK_CATALOGUE or include/drills.yaml)",
    )
    p.add_argument(
        "--ledger-dsn",
        default=None,
        help="ledger to check (default: $DRILLBOOK_LEDGER_DSN or the catalogue's)",
    )
    p.set_defaults(func=main)


def _tools(doc: Doctor) -> int | None:
    from drillbook.drills.backup_restore import tools

    newest = None
    for name in ("pg_restore", "psql", "pg_dump"):
        found = tools.available(name)
        if not found:
            doc.add(
                "fail",
                f"tool {name}",
                "not found on PATH, in /usr/lib/postgresql/*/bin or pgserver",
                "install the PostgreSQL client tools (e.g. apt-get install postgresql-client-16) or set restore.bin_dir",
            )
            continue
        majors = sorted({t.major for t in found})
        doc.add("ok", f"tool {name}", tools.describe(found))
        if name == "pg_restore":
            newest = majors[-1]
    return newest


def _server(doc: Doctor, label: str, dsn: str) -> tuple[Any, int] | None:
    """Connect read-only; return (connection, server major) or None after a fail line."""
    from drillbook.resources import pg

    try:
        pg.parse(dsn)
        conn = pg.connect(
            dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="drillbook-doctor"
        )
        conn.execute("set default_transaction_read_only = on")
        major = int(conn.execute("select current_setting('server_version_num')::int / 10000").fetchone()[0])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        doc.add(
            "fail",
            label,
            f"{pg.describe(dsn) if '=' in dsn or '://' in dsn else 'DSN'} unreachable: {first}",
            "check host, port, credentials and that the server is running",
        )
        return None
    version = conn.execute("show server_version").fetchone()[0]
    doc.add("ok", label, f"{pg.describe(dsn)} reachable, PostgreSQL {version}")
    return conn, major


def _dsn_of(doc: Doctor, label: str, conn_id: str) -> str | None:
    from drillbook.errors import ConfigurationError
    from drillbook.resources.connections import postgres_dsn_from_env

    try:
        return postgres_dsn_from_env(conn_id)
    except ConfigurationError as exc:
        doc.add(
            "fail",
            label,
            str(exc).splitlines()[0],
            f"set AIRFLOW_CONN_{conn_id.upper()} (or DRILLBOOK_CONN_{conn_id.upper()}) to a postgres URI",
        )
        return None


def _scratch_role(doc: Doctor, label: str, conn: Any) -> None:
    role, createdb, superuser = conn.execute(
        "select rolname, rolcreatedb, rolsuper from pg_roles where rolname = current_user"
    ).fetchone()
    if superuser:
        doc.add(
            "warn",
            f"{label} role",
            f"{role!r} is a superuser",
            "use a role with CREATEDB and without SUPERUSER: a drill needs no more, and a mistake costs less",
        )
    elif not createdb:
        doc.add(
            "fail",
            f"{label} role",
            f"{role!r} cannot create databases (no CREATEDB)",
            f"ALTER ROLE {role} CREATEDB (drills restore into databases they create)",
        )
    else:
        doc.add("ok", f"{label} role", f"{role!r} has CREATEDB and is not a superuser")


def _drill(doc: Doctor, drill: Any, base_dir: Path, newest_restore: int | None) -> None:
    from drillbook.catalogue.common import resolve_relative

    name = f"drill {drill.name}"
    scratch_major = source_major = None
    dsn = _dsn_of(doc, f"{name} scratch", drill.scratch.connection)
    if dsn:
        found = _server(doc, f"{name} scratch", dsn)
        if found:
            conn, scratch_major = found
            with conn:
                _scratch_role(doc, f"{name} scratch", conn)
    if drill.source is not None:
        dsn = _dsn_of(doc, f"{name} source", drill.source.connection)
        found = _server(doc, f"{name} source", dsn) if dsn else None
        if found:
            found[0].close()
            source_major = found[1]
            if newest_restore is not None and newest_restore < source_major:
                doc.add(
                    "fail",
                    f"{name} tools",
                    f"the source is PostgreSQL {source_major} but the newest pg_restore is {newest_restore}",
                    f"install PostgreSQL {source_major} client tools",
                )
    if scratch_major and source_major and scratch_major != source_major:
        doc.add(
            "warn",
            f"{name} server major",
            f"scratch is PostgreSQL {scratch_major}, source {source_major}",
            "restore into a scratch server of the source's major (SERVER_MAJOR_MISMATCH otherwise)",
        )
    location = drill.backup.location
    if location is not None and not drill.backup.is_s3 and not drill.backup.is_live:
        path = resolve_relative(location, base_dir)
        if path.exists():
            doc.add("ok", f"{name} backup location", f"{path} exists")
        else:
            doc.add(
                "fail",
                f"{name} backup location",
                f"{path} does not exist",
                "fix backup.location (relative paths are relative to the catalogue's directory)",
            )
    if drill.verify.reference:
        from drillbook.drills.backup_restore.verify.structure import load_reference, unrecorded_sections

        try:
            ref = load_reference(base_dir / drill.verify.reference)
        except ValueError as exc:
            doc.add(
                "fail", f"{name} reference", str(exc), "run `drillbook reference write` and commit the file"
            )
        else:
            missing = unrecorded_sections(ref)
            if missing:
                doc.add(
                    "warn",
                    f"{name} reference",
                    f"format {ref.get('drillbook_structure_reference')} does not record {', '.join(missing)}",
                    "write it again with `drillbook reference write` to check them too",
                )
            else:
                doc.add("ok", f"{name} reference", f"{drill.verify.reference} loads")


def main(args: argparse.Namespace) -> int:
    """Run every check; exit 1 when one failed."""
    from drillbook.errors import CatalogueError

    doc = Doctor()
    common.out("drillbook doctor")
    newest = _tools(doc)
    catalogue = None
    try:
        catalogue = load_catalogue_for(args)
        doc.add("ok", "catalogue", f"{len(catalogue.drills)} drills load")
    except CatalogueError as exc:
        doc.add(
            "fail", "catalogue", str(exc).splitlines()[0], "run `drillbook validate` and fix what it names"
        )
    if catalogue is not None:
        for drill in catalogue.drills:
            if drill.kind == "backup_restore":
                _drill(doc, drill, catalogue.base_dir, newest)
    from drillbook.cli.config import settings_of

    ledger = args.ledger_dsn or settings_of(args).ledger_dsn
    if not ledger and catalogue is not None:
        ledger = _dsn_of(doc, "ledger", catalogue.defaults.ledger_connection)
    if ledger:
        found = _server(doc, "ledger", ledger)
        if found:
            found[0].close()
    elif catalogue is None:
        doc.add("warn", "ledger", "no ledger configured", "set DRILLBOOK_LEDGER_DSN or --ledger-dsn")
    fails = sum(c.status == "fail" for c in doc.checks)
    warns = sum(c.status == "warn" for c in doc.checks)
    common.out(f"{len(doc.checks)} checks: {fails} failed, {warns} warnings")
    return 1 if doc.failed else 0
