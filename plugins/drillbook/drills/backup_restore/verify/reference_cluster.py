"""Write a structure reference from a backup file, by restoring it into a private throwaway cluster.

Rules this module enforces:
- the backup is restored only into a private throwaway cluster
  (``ephemeral.EphemeralCluster``: initdb'd in a fresh temporary directory, a
  unix socket and no TCP address, run as an unprivileged OS user when drillbook
  runs as root, removed afterwards whatever happened): no shared server is
  touched (principle 6);
- the cluster uses the dump's source server major when its ``initdb`` is
  installed, else the nearest newer one (stated in the result), and only
  the schema is restored (``--schema-only``): a reference needs no rows;
- roles the dump names (owners, grantees, default-privilege roles) are
  created ``NOLOGIN`` first, so GRANTs survive into the reference instead of
  failing on a missing role; the database is created from the archive's own
  ``DATABASE`` entry (``pg_restore --create``) so its collation provider and
  locale are the source's; the collation section is dropped when the cluster
  could not create it that way;
- a plain dump (.sql, .sql.gz, pg_dumpall) is a program: it is judged whole
  and restored only through the plain-dump statement filter, into the same
  kind of cluster (``reference_plain.py``); archives are restored by
  ``pg_restore``, which runs no psql meta-commands;
- every subprocess has a timeout; failures raise ``ReferenceFromBackupError``
  with the tool's last stderr lines.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from drillbook.drills.backup_restore.verify.reference_plain import TIMEOUT_S, roles_in
from drillbook.errors import ReferenceFromBackupError

_DB_ENTRY_RE = re.compile(r"^\d+; \d+ \d+ DATABASE - (.+?) ", re.MULTILINE)


def _run(
    argv: list[str],
    *,
    what: str,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout_s: int = TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ReferenceFromBackupError(f"{what} did not finish within {timeout_s}s") from None
    if check and proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-5:])
        raise ReferenceFromBackupError(f"{what} failed (exit {proc.returncode}): {tail}")
    return proc


def reference_from_backup(
    path: Path, *, database: str | None = None, timeout_s: int = TIMEOUT_S
) -> tuple[dict[str, Any], str]:
    """Restore ``path``'s schema into a throwaway cluster and read its structure; return (structure, note).

    ``database``: for a plain dump that creates several databases, the one to describe.
    """
    from psycopg import sql

    from drillbook.drills.backup_restore import tools
    from drillbook.drills.backup_restore.archive import ArchiveProblem, inspect_archive
    from drillbook.drills.backup_restore.ephemeral import EphemeralCluster, EphemeralUnavailable
    from drillbook.drills.backup_restore.verify.catalog import read_structure
    from drillbook.drills.backup_restore.verify.server import major_of
    from drillbook.resources.pg import connect

    try:
        info = inspect_archive(path)
    except ArchiveProblem as exc:
        raise ReferenceFromBackupError(f"{str(path)!r}: {exc.message}") from None
    if info.format.startswith("plain"):
        from drillbook.drills.backup_restore.verify.reference_plain import reference_from_plain

        return reference_from_plain(path, info, database=database, timeout_s=timeout_s)
    if database is not None:
        raise ReferenceFromBackupError(
            f"--database applies to plain dumps only; {str(path)!r} is a {info.format} archive"
        )
    restore_tool, seen = tools.choose("pg_restore", min_major=info.dump_major)
    if restore_tool is None:
        raise ReferenceFromBackupError(
            f"no pg_restore >= {info.dump_major} found (found: {tools.describe(seen)})"
        )
    script = _run(
        [restore_tool.path, "--schema-only", "-f", "-", str(path)],
        what="pg_restore (script)",
        timeout_s=timeout_s,
    ).stdout
    listing = _run(
        [restore_tool.path, "-l", "--create", str(path)], what="pg_restore -l", timeout_s=timeout_s
    ).stdout
    # the source server's major when its binaries are installed (tools.choose prefers the exact major)
    cluster = EphemeralCluster(min_major=major_of(info.server_version) or info.dump_major)
    try:
        cluster.start()
    except EphemeralUnavailable as exc:
        raise ReferenceFromBackupError(f"the throwaway cluster could not start: {exc}") from None
    try:
        with connect(cluster.dsn(), autocommit=True) as conn:
            for role in sorted(roles_in(script) - {cluster.superuser}):
                conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
        host = cluster.dsn().split("host=", 1)[1].split(" ", 1)[0]
        env = {**os.environ, "PGHOST": host, "PGPORT": "5432", "PGUSER": cluster.superuser}
        entry = _DB_ENTRY_RE.search(listing)
        why_not = "" if entry else "the archive has no DATABASE entry"
        structure = None
        proc = None
        if entry:  # the source's own CREATE DATABASE: its encoding, provider and locale
            proc = _run(
                [
                    restore_tool.path,
                    "--schema-only",
                    "--no-password",
                    "--create",
                    "-d",
                    "postgres",
                    str(path),
                ],
                what="pg_restore",
                timeout_s=timeout_s,
                env=env,
                check=False,
            )
            try:
                with connect(cluster.dsn(entry.group(1)), autocommit=True) as conn:
                    structure = read_structure(conn)
            except Exception:
                why_not = (
                    "this cluster could not create the source's database ("
                    + (proc.stderr.strip().splitlines() or ["no error output"])[0][:200]
                    + ")"
                )
        if structure is None:
            with connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute("create database drillbook_reference")
            proc = _run(
                [restore_tool.path, "--schema-only", "--no-password", "-d", "drillbook_reference", str(path)],
                what="pg_restore",
                timeout_s=timeout_s,
                env=env,
                check=False,
            )
            with connect(cluster.dsn("drillbook_reference"), autocommit=True) as conn:
                structure = read_structure(conn)
            structure.pop("database", None)
        errors = [line for line in proc.stderr.splitlines() if "error:" in line] if proc else []
        note = (
            f"restored the schema of {info.summary()} into a throwaway PostgreSQL {cluster.version} cluster"
            + (f" ({len(errors)} pg_restore errors: {errors[0].strip()[:200]})" if errors else "")
        )
        if why_not:
            note += f"; the collation is not recorded: {why_not}"
        return structure, note
    finally:
        cluster.close()
