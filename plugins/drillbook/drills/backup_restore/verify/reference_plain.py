"""Write a structure reference from a plain dump (.sql, .sql.gz, pg_dumpall), restored the way the drill restores it.

Rules this module enforces (principle 6: a plain dump is a program):
- the whole file is judged first (``prescan.scan_plain`` with the ephemeral
  scope); a statement refused even there (a shell escape, ``\\o``, a write
  outside the cluster) ends it with an error naming the line, before any
  cluster starts, so nothing of the dump ever runs;
- the dump is then fed to psql only through ``restore.run_restore``
  (the streaming statement filter, ``--no-psqlrc``, ``PSQLRC=/dev/null``,
  the pinned ``PGOPTIONS``), into a private throwaway cluster
  (``ephemeral.EphemeralCluster``) booted as the dump's own superuser for a
  pg_dumpall file; there is no second feeding path;
- a plain dump has no schema-only mode: the whole dump, rows included, is
  restored (the note says so); a restore that did not complete (refusal,
  timeout, a tool that gave up) is an error, never a reference;
- the database described is the only one the dump creates (``pg_dump -C``,
  pg_dumpall), or ``--database NAME``; a single-database dump goes into a
  database of drillbook's own and its collation is not recorded (it would
  be the throwaway cluster's, not the source's);
- memory stays flat: the file is only ever streamed; the roles a
  single-database dump names (owners, grantees) are found by a line-by-line
  pass that skips COPY rows and are created ``NOLOGIN`` first, as the
  archive path does; a pg_dumpall file creates its own roles.
"""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path
from typing import Any

from drillbook.drills.backup_restore.archive import ArchiveInfo
from drillbook.errors import ReferenceFromBackupError

TIMEOUT_S = 1800  # default of each tool run of a reference build (setting DRILLBOOK_REFERENCE_TIMEOUT)
LINE_MAX = 1 << 20  # longer lines are pieces of a statement or a row: never a role-bearing pg_dump line
_COPY_START = re.compile(rb"^COPY .* FROM stdin;\s*$")
OWN_DATABASE = "drillbook_reference"
_ROLE_RES = [
    re.compile(r"OWNER TO (\"(?:[^\"]|\"\")+\"|[A-Za-z_][\w$]*);"),
    re.compile(r"^(?:GRANT|REVOKE|ALTER DEFAULT PRIVILEGES) .* (?:TO|FROM) (.+?);$", re.MULTILINE),
    re.compile(r"ALTER DEFAULT PRIVILEGES FOR ROLE (\"(?:[^\"]|\"\")+\"|[A-Za-z_][\w$]*)"),
]


def roles_in(script: str) -> set[str]:
    """Role names in OWNER TO / GRANT / REVOKE / DEFAULT PRIVILEGES statements of ``script``."""
    roles: set[str] = set()
    for regex in _ROLE_RES:
        for match in regex.findall(script):
            match = re.split(r" WITH GRANT OPTION| GRANTED BY ", match)[0]
            for name in match.split(","):
                name = name.strip()
                if name.upper() in ("PUBLIC", "CURRENT_USER", "SESSION_USER", "CURRENT_ROLE") or not name:
                    continue
                roles.add(name[1:-1].replace('""', '"') if name.startswith('"') else name.lower())
    return roles


def plain_roles(path: Path, *, gz: bool) -> set[str]:
    """Roles a plain dump names in OWNER TO / GRANT / REVOKE / DEFAULT PRIVILEGES lines, read line by line."""
    roles: set[str] = set()
    in_copy = False
    whole = True  # the previous piece ended a line: this one starts a line
    with gzip.open(path, "rb") if gz else path.open("rb") as src:
        while True:
            piece = src.readline(LINE_MAX)
            if not piece:
                break
            starts, whole = whole, piece.endswith(b"\n")
            if not starts:
                continue
            if in_copy:
                in_copy = piece.rstrip(b"\r\n") != b"\\."
                continue
            if _COPY_START.match(piece):
                in_copy = True
                continue
            if b" TO " in piece or b" FROM " in piece or b"FOR ROLE" in piece:
                roles |= roles_in(piece.decode("utf-8", "replace").rstrip("\r\n"))
    return roles


def _error(message: str) -> Exception:
    return ReferenceFromBackupError(message)


def _pick_database(path: Path, created: list[str], database: str | None, cluster_dump: bool) -> str | None:
    """The database to describe; None for a single-database dump (restored into drillbook's own)."""
    if database is not None:
        if database not in created:
            raise _error(
                f"{str(path)!r}: --database {database!r} is not created by this dump "
                f"(it creates: {', '.join(repr(d) for d in created) or 'no database'})"
            )
        return database
    if len(created) == 1:
        return created[0]
    if created or cluster_dump:
        raise _error(
            f"{str(path)!r} creates databases {', '.join(repr(d) for d in created) or '(none)'}; "
            "give --database NAME to say which one to describe"
        )
    return None


def reference_from_plain(
    path: Path, info: ArchiveInfo, *, database: str | None = None, timeout_s: int = TIMEOUT_S
) -> tuple[dict[str, Any], str]:
    """Judge, then restore the whole plain dump into a throwaway cluster and read one database's structure."""
    from psycopg import sql

    from drillbook.drills.backup_restore import prescan, restore, tools
    from drillbook.drills.backup_restore.ephemeral import EphemeralCluster, EphemeralUnavailable
    from drillbook.drills.backup_restore.verify.catalog import read_structure
    from drillbook.drills.backup_restore.verify.server import major_of
    from drillbook.resources.pg import connect

    gz = info.format == "plain.gz"
    try:
        scan = prescan.scan_plain(path, gz=gz, target="ephemeral")
    except (OSError, EOFError, zlib.error) as exc:  # a cut or corrupt .gz
        raise _error(f"{str(path)!r}: could not read the dump: {type(exc).__name__}: {exc}") from None
    if scan.refusals:
        first = scan.refusals[0]
        raise _error(
            f"{str(path)!r} was refused at line {first.line} ({first.reason}: {first.statement}); "
            f"{len(scan.refusals)} statement(s) refused in all; nothing of it was run"
        )
    wanted = _pick_database(path, scan.created_databases, database, info.cluster)
    psql, seen = tools.choose("psql", min_major=info.dump_major)
    if psql is None:
        raise _error(f"no psql >= {info.dump_major} found (found: {tools.describe(seen)})")
    superuser = scan.superusers[0] if info.cluster and scan.superusers else "drillbook_ephemeral"
    roles = set() if info.cluster else plain_roles(path, gz=gz)
    cluster = EphemeralCluster(
        min_major=major_of(info.server_version) or info.dump_major, superuser=superuser
    )
    try:
        cluster.start()
    except EphemeralUnavailable as exc:
        raise _error(f"the throwaway cluster could not start: {exc}") from None
    try:
        with connect(cluster.dsn(), autocommit=True) as conn:
            for role in sorted(roles - {cluster.superuser}):
                conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
            if wanted is None:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(OWN_DATABASE)))
        outcome = restore.run_restore(
            fmt=info.format,
            tool=psql,
            path=path,
            scratch_db_dsn=cluster.dsn(OWN_DATABASE if wanted is None else "postgres"),
            jobs=1,
            no_owner=False,
            timeout=timeout_s,
            scope="ephemeral",
            expected=(f'role "{cluster.superuser}" already exists',),
        )
        groups = outcome.classifier.groups.values()
        if outcome.refusal is not None:  # the file changed between the two reads
            raise _error(
                f"{str(path)!r}: the feed to psql was refused at {outcome.refusal.describe()}; "
                "no reference was written"
            )
        if outcome.fatal:
            why = (
                "timed out"
                if outcome.timed_out
                else outcome.feed_error
                or next((g.sample[0] for g in groups if g.sample), " | ".join(outcome.classifier.tail))
            )
            raise _error(f"{str(path)!r}: the restore did not complete ({why})")
        try:
            with connect(cluster.dsn(wanted or OWN_DATABASE), autocommit=True) as conn:
                structure = read_structure(conn)
        except Exception as exc:
            raise _error(
                f"{str(path)!r}: database {wanted!r} was not there after the restore "
                f"({str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__})"
            ) from None
        errors = [line for g in groups for line in g.sample]
        note = (
            f"restored the whole of {info.summary()} (a plain dump has no schema-only mode) into a throwaway "
            f"PostgreSQL {cluster.version} cluster through the statement filter ({scan.statements} statements judged)"
            + (f"; described database {wanted!r}" if wanted else "")
            + (
                f" ({outcome.classifier.error_lines} psql errors: {errors[0].strip()[:200]})"
                if errors
                else ""
            )
        )
        if wanted is None:
            structure.pop("database", None)
            note += "; the collation is not recorded: the dump does not create its database (take it with -C to record it)"
        return structure, note
    finally:
        cluster.close()
