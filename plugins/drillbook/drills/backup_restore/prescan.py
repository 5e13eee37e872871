"""Judge a whole dump before anything is restored: refuse it while nothing has been touched.

Rules this module enforces:
- a plain dump (and plain.gz) is read once, streaming, through the same
  statement filter that later sits in front of psql (sqlfilter.py), in
  collecting mode, so the first refusal and what the dump is (a pg_dumpall
  cluster dump, a ``pg_dump -C`` dump that creates and connects to a
  database) are known before psql starts; the feed is filtered again because
  the file could change between the two reads;
- on a shared scratch server a cluster dump, a dump that creates a database
  and any other refused statement end the drill with ``DUMP_LEAVES_DATABASE``;
  in an ephemeral cluster only statements that leave the cluster do;
- an archive (custom, directory, tar) is restored by ``pg_restore -d``, which
  runs no psql meta-commands and no CREATE DATABASE without ``-C``: its
  schema SQL (``pg_restore -s -f -``, what ``pg_restore -d`` would run apart
  from table data) is judged by the same statement rules (for an ephemeral
  cluster, only statements that leave the cluster are refused).
"""

from __future__ import annotations

import gzip
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from drillbook.drills.backup_restore.sqlfilter import StatementFilter
from drillbook.drills.backup_restore.sqlrules import Refusal
from drillbook.drills.backup_restore.sqlstream import filter_stream

SCAN_TIMEOUT_S = 600


@dataclass
class Scan:
    refusals: list[Refusal] = field(default_factory=list)
    created_databases: list[str] = field(default_factory=list)
    connects: list[str] = field(default_factory=list)
    superusers: list[str] = field(default_factory=list)
    statements: int = 0

    def refusal_message(self, *, cluster: bool, target: str) -> str | None:
        """One sentence for DUMP_LEAVES_DATABASE, or None when the dump may be restored on ``target``."""
        if not self.refusals:
            return None
        first = self.refusals[0].describe()
        if target == "shared" and cluster:
            return (
                f"this is a cluster dump (pg_dumpall): it creates roles and databases "
                f"({', '.join(self.created_databases) or 'none besides the defaults'}) on the server; nothing was "
                f"restored; set restore.target: ephemeral to restore it into a private cluster (first: {first})"
            )
        if target == "shared" and self.created_databases:
            dbs = ", ".join(repr(d) for d in self.created_databases)
            return (
                f"this dump creates and connects to database {dbs} (pg_dump -C); nothing was restored; take the dump "
                f"without -C or set restore.target: ephemeral (first: {first})"
            )
        return f"the dump was refused before the restore started, nothing was restored: {first}"


def scan_plain(path: Path, *, gz: bool, target: str) -> Scan:
    """Read the plain dump at ``path`` through the filter in collecting mode."""
    flt = StatementFilter("ephemeral" if target == "ephemeral" else "shared", collect=True)
    with gzip.open(path, "rb") if gz else path.open("rb") as src:
        filter_stream(src, lambda _b: None, flt)  # type: ignore[arg-type]
    return Scan(
        refusals=flt.refusals,
        created_databases=flt.created_databases,
        connects=flt.connects,
        superusers=flt.superusers,
        statements=flt.statements,
    )


def scan_archive(pg_restore: str, path: Path, *, target: str = "shared") -> Scan:
    """Judge the schema SQL of an archive; raises ``subprocess.TimeoutExpired`` past SCAN_TIMEOUT_S."""
    flt = StatementFilter("ephemeral" if target == "ephemeral" else "shared", collect=True, metas=False)
    proc = subprocess.Popen(
        [pg_restore, "-s", "-f", "-", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        filter_stream(proc.stdout, lambda _b: None, flt)  # type: ignore[arg-type]
        proc.wait(timeout=SCAN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Scan(refusals=flt.refusals, created_databases=flt.created_databases, statements=flt.statements)
