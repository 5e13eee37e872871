"""Start a restored physical data directory as a private scratch cluster, recover it to the target, promote it.

Rules this module enforces:
- the cluster lives in the ephemeral machinery's directory
  (``drillbook-ephemeral-*`` with the flock'ed ``owner.lock``; ephemeral.py,
  ephemeral_reap.py): no TCP (``listen_addresses=''``), a unix socket in that
  directory, a bare environment, its own network namespace where the kernel
  allows, an unprivileged OS user (the repository's) when drillbook is root;
  ``close`` stops it and removes the directory, and the reaper finds it when
  the drill was killed;
- a server that does not start, exits during recovery or refuses the
  safety check's connection is ``RECOVERY_FAILED`` with the tail of its log,
  ``PITR_TARGET_UNREACHED`` when recovery ended before the target; what may
  run at all is cluster_safety.py's.
"""

from __future__ import annotations

import os
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drillbook.drills.backup_restore import ephemeral_reap
from drillbook.drills.backup_restore.ephemeral import EphemeralUnavailable
from drillbook.drills.backup_restore.physical.cluster_safety import SafeCluster
from drillbook.drills.backup_restore.physical.restored import RecoveryProblem

START_TIMEOUT_S = 600
#: how often recovery's progress is read; a query on an open connection costs well under a millisecond
RECOVERY_POLL_S = 0.05


@dataclass
class Recovery:
    reached: str  # "target paused" | "end of archive"
    last_replay: Any  # datetime | None: pg_last_xact_replay_timestamp() before promotion
    replay_lsn: str | None
    seconds: float


class PhysicalCluster(SafeCluster):
    """``prepare()`` -> a tool restores into ``data_dir`` -> ``start()`` -> ``recover()`` -> ``promote()`` -> ``close()``."""

    def prepare(self) -> Path:
        """Make the cluster's directory (locked for the reaper) and return the empty data directory to restore into."""
        import tempfile

        self._user = self._given_user
        uids = {os.geteuid()} | ({self._user.pw_uid} if self._user else set())
        self.reaped = ephemeral_reap.reap(uids)
        self.root = Path(tempfile.mkdtemp(prefix=ephemeral_reap.PREFIX))
        self._lock_fd = ephemeral_reap.hold_lock(self.root)
        self.data_dir.mkdir(mode=0o700)
        if self._user:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
            os.chown(self.data_dir, self._user.pw_uid, self._user.pw_gid)
        return self.data_dir

    def start(self) -> PhysicalCluster:  # type: ignore[override]
        assert self.root is not None and self.bindir is not None
        conf = self.root / "drillbook.conf"
        # pg_ctl hands -o to a shell
        opts = " ".join(shlex.quote(a) for a in [*self._args(conf), *self.forced_safe_args()])
        self._running = True  # from here close() stops it, whatever start did
        try:
            self._start_server(opts, timeout_s=START_TIMEOUT_S)
        except EphemeralUnavailable as exc:
            raise self._start_problem(str(exc)) from None
        return self

    def server_log(self, limit: int = 4000) -> str:
        assert self.root is not None
        try:
            with open(self.root / "server.log", "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - limit))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _start_problem(self, why: str) -> RecoveryProblem:
        log = self.server_log()
        if "recovery ended before configured recovery target was reached" in log:
            return RecoveryProblem(
                "PITR_TARGET_UNREACHED",
                "recovery replayed every archived WAL segment and ended "
                f"before the recovery target: {_last_lines(log, 'LOG:  redo done|FATAL')}",
            )
        return RecoveryProblem(
            "RECOVERY_FAILED",
            f"the restored cluster did not start ({why[-200:]}); server log: "
            f"{_last_lines(log, 'FATAL|PANIC|ERROR')}",
        )

    def assert_safe_running(self) -> dict[str, Any]:
        """From pg_settings and the catalogs of the running server: nothing may archive or replicate."""
        try:
            return self._assert_safe_running()
        except Exception as exc:
            if not type(exc).__module__.startswith("psycopg"):
                raise
            deadline = (
                time.monotonic() + 30
            )  # a FATAL end of recovery drops connections before the postmaster exits
            while self._postmaster_up() and time.monotonic() < deadline:
                time.sleep(0.2)
            if not self._postmaster_up():
                raise self._start_problem("the server exited during recovery") from None
            raise RecoveryProblem(
                "RECOVERY_FAILED",
                f"the started scratch cluster refused the safety check's connection: "
                f"{type(exc).__name__}: {str(exc).strip()[:300]}",
            ) from None

    def wait_recovery(self, *, has_target: bool, timeout_s: float) -> Recovery:
        """Wait until replay pauses at the target (or recovery ends for ``latest``); read the last replayed commit.

        One connection polls (a hot-standby session survives the end of recovery); it is opened again only
        when the server dropped it.
        """
        began = time.monotonic()
        deadline = began + timeout_s
        conn = None
        try:
            while True:
                if not self._postmaster_up():
                    raise self._start_problem("the server exited during recovery")
                try:
                    if conn is None:
                        conn = self.connect()
                    in_recovery, state, last, lsn = conn.execute(
                        "select pg_is_in_recovery(), case when pg_is_in_recovery() then pg_get_wal_replay_pause_state() end, "
                        "pg_last_xact_replay_timestamp(), pg_last_wal_replay_lsn()::text"
                    ).fetchone()
                except Exception as exc:
                    if not type(exc).__module__.startswith("psycopg"):
                        raise
                    if conn is not None:
                        conn.close()
                        conn = None
                    in_recovery, state, last, lsn = True, None, None, None
                if has_target and in_recovery and state == "paused":
                    return Recovery("target paused", last, lsn, time.monotonic() - began)
                if not in_recovery:
                    if has_target:  # promoted without pausing: only when the tool wrote another target action
                        return Recovery(
                            "target, promoted by the recovery settings", last, lsn, time.monotonic() - began
                        )
                    return Recovery("end of archive", last, lsn, time.monotonic() - began)
                if time.monotonic() > deadline:
                    raise RecoveryProblem(
                        "PITR_TARGET_UNREACHED" if has_target else "RECOVERY_FAILED",
                        f"recovery did not reach its end within {timeout_s:.0f}s (replayed to {lsn})",
                    )
                time.sleep(RECOVERY_POLL_S)
        finally:
            if conn is not None:
                conn.close()

    def promote(self) -> None:
        with self.connect() as conn:
            if conn.execute("select pg_is_in_recovery()").fetchone()[0]:
                conn.execute("select pg_promote(true, 120)")

    def _postmaster_up(self) -> bool:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return False
        except PermissionError:
            return True
        return True

    def databases(self) -> list[tuple[str, int]]:
        """(name, user tables) of every database a client may connect to, templates excluded."""
        import psycopg

        found = []
        with self.connect() as conn:
            names = [
                r[0]
                for r in conn.execute(
                    "select datname from pg_database where datallowconn and not datistemplate "
                    "order by datname"
                ).fetchall()
            ]
        for name in names:
            with psycopg.connect(self.dsn(name), autocommit=True, connect_timeout=30) as conn:
                row = conn.execute(
                    "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace where "
                    "c.relkind in ('r','p') and n.nspname not in ('pg_catalog','information_schema') "
                    "and n.nspname not like 'pg_toast%'"
                ).fetchone()
            found.append((name, int(row[0]) if row else 0))
        return found

    def close(self, *, remove_now: bool = True) -> None:
        if self.root is not None and not self._running and self._postmaster_up():
            self._running = True  # started by a failing pg_ctl: still stop it
        super().close(remove_now=remove_now)


def _last_lines(log: str, pattern: str, n: int = 3) -> str:
    lines = [line.strip() for line in log.splitlines() if re.search(pattern, line)]
    return " | ".join(lines[-n:])[-600:] or (log.strip().splitlines() or [""])[-1][-300:]
