"""Read what a physical backup restored: its PostgreSQL major, the server binaries of that major, its pg_control.

Rules this module enforces:
- server binaries are chosen by the restored ``PG_VERSION``: exactly that
  major, from /usr/lib/postgresql/<major>/bin, PATH or pgserver's bundle;
  none is ``SERVER_BINARIES_MISSING`` naming the major;
- the server binaries run before start (``pg_controldata``, ``postgres -C``)
  run as the cluster's OS user, in its directory, with the server's bare
  environment (ephemeral.py); a failure is ``RECOVERY_FAILED`` naming the
  binary, never a traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from drillbook.drills.backup_restore import tools
from drillbook.drills.backup_restore.ephemeral import EphemeralCluster
from drillbook.errors import DrillbookError


class RecoveryProblem(DrillbookError):
    """Start or recovery failed; ``code`` is the finding (RECOVERY_FAILED, PITR_TARGET_UNREACHED, SERVER_BINARIES_MISSING)."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(message)


def server_bin_dir(major: int) -> Path:
    """The bin directory of PostgreSQL ``major`` server binaries (postgres, pg_ctl, pg_controldata)."""
    seen = []
    # stops at the first fit: a drill process (an Airflow task) runs one --version, not one per installation,
    # and does not import pgserver when the machine's own binaries fit (0.15-0.2 s of a fresh process's drill)
    for tool in tools.iter_available("pg_ctl"):
        seen.append(tool)
        d = Path(
            os.path.realpath(tool.path)
        ).parent  # /usr/local/bin/pg_ctl is often a link into the server's bin
        if tool.major == major and (d / "postgres").exists() and (d / "pg_controldata").exists():
            return d
    raise RecoveryProblem(
        "SERVER_BINARIES_MISSING",
        f"the restored data directory is PostgreSQL {major} (PG_VERSION) but no PostgreSQL {major} "
        f"server binaries (postgres, pg_ctl) were found (found: {tools.describe(seen)}); "
        f"install postgresql-{major}",
    )


class RestoredCluster(EphemeralCluster):
    """The restored data directory of a scratch cluster: its major, server binaries and pg_control."""

    def __init__(self, *, user: Any, superuser: str = "postgres"):
        super().__init__(min_major=None, superuser=superuser)
        self._given_user = user
        self.bindir: Path | None = None
        self.major: int | None = None
        self.control: dict[str, str] = {}

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    def _out(self, argv: list[str], timeout: float = 60) -> str:
        return self._run(argv, timeout, fail=lambda message: RecoveryProblem("RECOVERY_FAILED", message))

    def read_version(self) -> int:
        try:
            text = (self.data_dir / "PG_VERSION").read_text()[:16].strip()
        except OSError as exc:
            raise RecoveryProblem(
                "RECOVERY_FAILED", f"the restored data directory has no readable PG_VERSION: {exc}"
            ) from None
        if not re.fullmatch(r"\d{2,3}", text):
            raise RecoveryProblem(
                "RECOVERY_FAILED",
                f"PG_VERSION of the restored data directory: expected a major "
                f"version like '15', got {text[:16]!r}",
            )
        self.major = int(text)
        self.bindir = server_bin_dir(self.major)
        self._pg_ctl = str(self.bindir / "pg_ctl")
        self.version = str(self.major)
        for line in self._out([str(self.bindir / "pg_controldata"), "-D", str(self.data_dir)]).splitlines():
            key, _, value = line.partition(":")
            self.control[key.strip()] = value.strip()
        return self.major

    @property
    def wal_segment_size(self) -> int | None:
        value = self.control.get("Bytes per WAL segment", "")
        return int(value) if value.isdigit() else None

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=30)
