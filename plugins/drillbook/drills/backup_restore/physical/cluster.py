"""Start a restored physical data directory as a private scratch cluster, recover it to the target, promote it.

Rules this module enforces:
- the cluster lives in the ephemeral machinery's directory
  (``drillbook-ephemeral-*`` with the flock'ed ``owner.lock``; ephemeral.py,
  ephemeral_reap.py): no TCP (``listen_addresses=''``), a unix socket in that
  directory, a bare environment, its own network namespace where the kernel
  allows, an unprivileged OS user (the repository's) when drillbook is root;
  ``close`` stops it and removes the directory, and the reaper finds it when
  the drill was killed;
- the restored ``postgresql.conf`` (and its includes, hba and ident files) is
  never read: the server starts with drillbook's own ``config_file`` with
  archiving, replication and every command hook off;
  ``postgresql.auto.conf`` (the tool's recovery settings) is still read, as
  PostgreSQL always reads it, so **before start** the effective value of each
  setting that could reach production is read: archiving on, a
  primary_conninfo, a slot, a command hook or logical replication workers is
  ``SCRATCH_UNSAFE`` and the server is never started. drillbook does not
  silently rewrite a backup's ALTER SYSTEM settings: the operator must see
  that a restore of this backup would archive or replicate. The files are
  read in-process when they are plain ``name = 'value'`` lines and every
  value is literally the safe one (conf_scan.py), else by the server binary
  (``postgres -C``, one process per setting);
- because an in-process read could be fooled, every setting it vouches for
  is also forced on the server's command line (``forced_safe_args``: the safe
  values, the recovery target the drill wrote), which outranks every file,
  and after start ``pg_file_settings`` (PostgreSQL's own parse of the same
  files) must match what was read before start: a mismatch is
  ``SCRATCH_UNSAFE`` and the server is stopped, having run with the forced
  values only;
- settings that run code or write outside the scratch directory but cannot
  reach production (ssl_passphrase_command, preload libraries, jit,
  external_pid_file, logging_collector, hba/ident files: ``FORCED``) are set
  on the server's command line, which outranks postgresql.auto.conf;
- a ``standby.signal`` in the restored directory is ``SCRATCH_UNSAFE`` before
  start (a standby never ends recovery; it would wait for a primary);
- **after start**, before anything else, the same is asserted from
  ``pg_settings``, and no replication slot may be active;
- server binaries are chosen by the restored ``PG_VERSION``: exactly that
  major, from /usr/lib/postgresql/<major>/bin, PATH or pgserver's bundle;
  none is ``SERVER_BINARIES_MISSING`` naming the major;
- the hot-standby limits (max_connections, …) are taken from the restored
  ``pg_control`` (``pg_controldata``) so recovery is never refused for them.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drillbook.drills.backup_restore import ephemeral_reap, tools
from drillbook.drills.backup_restore.ephemeral import EphemeralCluster, EphemeralUnavailable
from drillbook.drills.backup_restore.physical import conf_scan
from drillbook.errors import DrillbookError

START_TIMEOUT_S = 600
#: how often recovery's progress is read; a query on an open connection costs well under a millisecond
RECOVERY_POLL_S = 0.05
#: settings whose effective value must be exactly this (lower-cased) in the scratch cluster
SAFE_VALUES: dict[str, tuple[str, ...]] = {
    "archive_mode": ("off",),
    "primary_conninfo": ("",),
    "primary_slot_name": ("",),
    "archive_library": ("",),
    "recovery_end_command": ("",),
    "archive_cleanup_command": ("",),
    "max_logical_replication_workers": ("0",),
    "listen_addresses": ("",),
}
#: settings forced on the server's command line, which outranks every configuration file (postgresql.auto.conf
#: included, which PostgreSQL reads after drillbook.conf): none of them archives or replicates, so a backup
#: setting them is not refused, but each would run code or write outside the scratch directory:
#: ssl_passphrase_command runs a shell command at start (ssl on, encrypted key), preload libraries and a jit
#: provider load code by name or path, external_pid_file/logging_collector write to any path the OS user may
#: write, hba/ident files are read from wherever they point
FORCED: dict[str, str] = {
    "ssl": "off",
    "ssl_passphrase_command": "",
    "shared_preload_libraries": "",
    "session_preload_libraries": "",
    "local_preload_libraries": "",
    "jit": "off",
    "external_pid_file": "",
    "logging_collector": "off",
    "log_destination": "stderr",
}
#: recovery target settings whose effective value must be exactly what the restore wrote (absent: empty)
RECOVERY_TARGETS = (
    "recovery_target",
    "recovery_target_time",
    "recovery_target_name",
    "recovery_target_lsn",
    "recovery_target_xid",
    "recovery_target_action",
)
_CONTROL_LIMITS = {  # pg_controldata label -> setting that must be >= it on a hot standby
    "max_connections setting": "max_connections",
    "max_worker_processes setting": "max_worker_processes",
    "max_wal_senders setting": "max_wal_senders",
    "max_prepared_xacts setting": "max_prepared_transactions",
    "max_locks_per_xact setting": "max_locks_per_transaction",
}


class ClusterUnsafe(DrillbookError):
    """The restored cluster could archive or replicate towards production; it is refused (``SCRATCH_UNSAFE``)."""


class RecoveryProblem(DrillbookError):
    """Start or recovery failed; ``code`` is the finding (RECOVERY_FAILED, PITR_TARGET_UNREACHED, SERVER_BINARIES_MISSING)."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(message)


@dataclass
class Recovery:
    reached: str  # "target paused" | "end of archive"
    last_replay: Any  # datetime | None: pg_last_xact_replay_timestamp() before promotion
    replay_lsn: str | None
    seconds: float


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


class PhysicalCluster(EphemeralCluster):
    """``prepare()`` -> a tool restores into ``data_dir`` -> ``start()`` -> ``recover()`` -> ``promote()`` -> ``close()``."""

    def __init__(self, *, user: Any, superuser: str = "postgres"):
        super().__init__(min_major=None, superuser=superuser)
        self._given_user = user
        self.bindir: Path | None = None
        self.major: int | None = None
        self.control: dict[str, str] = {}
        #: the recovery target settings the restore wrote (assert_safe_before_start), forced at start
        self._recovery: dict[str, str] | None = None
        #: the restore_command the restore tool wrote and its check accepted, pinned on the command line at start
        self.restore_command: str | None = None
        #: what the in-process read found in the files before start; None when ``postgres -C`` read them
        self.scanned: dict[str, str] | None = None

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

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

    def _out(self, argv: list[str], timeout: float = 60) -> str:
        kwargs: dict = {"user": self._user.pw_uid, "group": self._user.pw_gid} if self._user else {}
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
                cwd=str(self.root),
                env=self._env(argv[0]),
                **kwargs,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise RecoveryProblem(
                "RECOVERY_FAILED", f"{Path(argv[0]).name}: {type(exc).__name__}: {exc}"
            ) from None
        if proc.returncode != 0:
            raise RecoveryProblem(
                "RECOVERY_FAILED",
                f"{Path(argv[0]).name} exited {proc.returncode}: "
                f"{(proc.stderr or proc.stdout).strip()[-400:]}",
            )
        return proc.stdout

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

    def _write_config(self) -> Path:
        assert self.root is not None
        conf = self.root / "drillbook.conf"
        lines = [
            "listen_addresses = ''",
            "port = 5432",
            f"unix_socket_directories = '{self.root}'",
            f"hba_file = '{self.root / 'drillbook_hba.conf'}'",
            f"ident_file = '{self.root / 'drillbook_ident.conf'}'",
            "archive_mode = off",
            "archive_command = ''",
            "archive_library = ''",
            "primary_conninfo = ''",
            "primary_slot_name = ''",
            "recovery_end_command = ''",
            "archive_cleanup_command = ''",
            "max_logical_replication_workers = 0",
            "max_sync_workers_per_subscription = 0",
            "hot_standby = on",
            "fsync = off",
            # thrown away after the drill, so never crash-recovered: without full-page images, the verify
            # ladder's first scan (which sets every row's hint bits, WAL-logged when checksums are on) does
            # not write a copy of every page to WAL after the end-of-recovery checkpoint
            "full_page_writes = off",
            "logging_collector = off",
            "shared_preload_libraries = ''",
            "log_min_messages = warning",
        ]
        for label, setting in _CONTROL_LIMITS.items():
            value = self.control.get(label, "")
            if value.isdigit():
                lines.append(f"{setting} = {max(int(value), 1)}")
        conf.write_text("\n".join(lines) + "\n")
        (self.root / "drillbook_hba.conf").write_text("local all all trust\n")
        (self.root / "drillbook_ident.conf").write_text("")
        for p in ("drillbook.conf", "drillbook_hba.conf", "drillbook_ident.conf"):
            if self._user:
                os.chown(self.root / p, self._user.pw_uid, self._user.pw_gid)
        return conf

    def _args(self, conf: Path) -> list[str]:
        assert self.root is not None
        return [
            "-c",
            f"config_file={conf}",
            "-c",
            "listen_addresses=",
            "-c",
            f"unix_socket_directories={self.root}",
            "-c",
            "port=5432",
            "-c",
            f"hba_file={self.root / 'drillbook_hba.conf'}",
            "-c",
            f"ident_file={self.root / 'drillbook_ident.conf'}",
            *[a for k, v in FORCED.items() for a in ("-c", f"{k}={v}")],
        ]

    def _safe_names(self) -> list[str]:
        return [n for n in SAFE_VALUES if n != "archive_library" or (self.major or 0) >= 15]  # new in 15

    def forced_safe_args(self) -> list[str]:
        """``-c`` options that pin every setting the pre-start check reads to what it accepted.

        The command line outranks postgresql.auto.conf and its includes, so the server runs with these values
        whatever the files say (conf_scan.py: an in-process read of the files is never trusted alone). Recovery
        targets the drill did not write are emptied first, then the written one set: PostgreSQL refuses a second
        target kind while one is set, even an empty one.
        """
        args = [a for k in self._safe_names() for a in ("-c", f"{k}={SAFE_VALUES[k][0]}")]
        args += ["-c", "archive_command=", "-c", "max_sync_workers_per_subscription=0"]
        if self.restore_command is not None:
            args += ["-c", f"restore_command={self.restore_command}"]
        if self._recovery is not None:
            rec = self._recovery
            args += [
                a
                for k in RECOVERY_TARGETS
                if k not in rec and k != "recovery_target_action"
                for a in ("-c", f"{k}=")
            ]
            args += [a for k in RECOVERY_TARGETS if k in rec for a in ("-c", f"{k}={rec[k]}")]
        return args

    def _scan_safe(
        self, conf: Path, names: list[str], recovery: Mapping[str, str] | None
    ) -> dict[str, str] | None:
        """The pre-start values read in-process when every one is literally acceptable, else None (ask ``postgres -C``).

        Only an exact canonical safe value (``off``, ``''``, ``0``; the very recovery target the drill wrote) is
        accepted here: anything else, ``archive_mode = false`` included, is decided by the server binary, so this
        path never refuses what PostgreSQL would allow nor allows what it would refuse.
        """
        files = conf_scan.file_values([conf, self.data_dir / "postgresql.auto.conf"], names)
        if files is None:
            return None
        argv = self._args(conf)
        cmdline = dict(a.partition("=")[::2] for a in argv[1::2])  # -c name=value pairs
        values = {**files, **{k: v for k, v in cmdline.items() if k in names}}
        out: dict[str, str] = {}
        for name in names:
            if name in SAFE_VALUES:
                if values.get(name) not in SAFE_VALUES[name]:
                    return None
                out[name] = values[name]
            elif name == "recovery_target_action" and (recovery is None or name not in recovery):
                out[name] = values.get(name, "pause")  # not written: not checked (nothing to pause at)
            elif values.get(name, "") != (recovery or {}).get(name, ""):
                return None
            else:
                out[name] = values.get(name, "")
        self.scanned = files
        return out

    def effective_settings(
        self, extra: tuple[str, ...] = (), recovery: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The value of each safety setting (and ``extra``) the server would run with; nothing is started.

        In-process (``_scan_safe``) when the files are plain and every value is literally safe, else ``postgres -C``.
        """
        assert self.bindir is not None
        from concurrent.futures import ThreadPoolExecutor

        conf = self._write_config()
        postgres = str(self.bindir / "postgres")

        def one(name: str) -> str:  # -C takes one setting per call; each call is a short-lived process
            return self._out([postgres, "-D", str(self.data_dir), *self._args(conf), "-C", name]).strip()

        names = self._safe_names()
        names += [n for n in extra if n not in names]
        self.scanned = None
        scanned = self._scan_safe(conf, names, recovery)
        if scanned is not None:
            return scanned
        # all at once: each process mostly waits (exec, loading, reading the files); 4 at a time left the
        # safety phase at 4 rounds of start-ups
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            return dict(zip(names, pool.map(one, names), strict=True))

    def assert_safe_before_start(
        self, recovery: Mapping[str, str] | None = None, *, restore_command: str | None = None
    ) -> dict[str, str]:
        """Refuse what could reach production; with ``recovery`` (what the restore wrote) also any recovery target
        the server would run with that the drill did not write (the backup's own files, includes, can set one).

        ``restore_command``: the one the restore tool wrote and its source accepted (pgbackrest.py, barman.py);
        it is pinned on the server's command line, so no file or include read after the check can replace it.
        """
        self.restore_command = restore_command
        if (self.data_dir / "standby.signal").exists():
            raise ClusterUnsafe(
                "the restored data directory holds standby.signal: it would start as a standby that "
                "never ends recovery and waits for a primary (the drill recovers to a target, it does "
                "not follow production); refused before start"
            )
        self._recovery = dict(recovery) if recovery is not None else None
        values = self.effective_settings(RECOVERY_TARGETS if recovery is not None else (), recovery)
        bad = {k: v for k, v in values.items() if k in SAFE_VALUES and v.lower() not in SAFE_VALUES[k]}
        if recovery is not None:
            smuggled = {
                k: values[k]
                for k in RECOVERY_TARGETS
                if values[k] != recovery.get(k, "")
                and not (k == "recovery_target_action" and k not in recovery)
            }
            if smuggled:
                what = ", ".join(f"{k}={v!r}" for k, v in sorted(smuggled.items()))
                raise ClusterUnsafe(
                    f"the restored cluster would recover with {what}, which the drill did not write "
                    f"(it wrote {dict(recovery) or 'no target'}): a target set by the backup's own "
                    "configuration would stop recovery elsewhere; refused before start"
                )
        if bad:
            what = ", ".join(f"{k}={v!r}" for k, v in sorted(bad.items()))
            raise ClusterUnsafe(
                f"the restored cluster would run with {what} (set in the backup's postgresql.auto.conf, "
                "which PostgreSQL always reads): it could archive or replicate into production; "
                "refused before start"
            )
        return values

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

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=30)

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

    def _assert_safe_running(self) -> dict[str, Any]:
        with self.connect() as conn:
            rows = dict(
                conn.execute(
                    "select name, setting from pg_settings where name = any(%s)",
                    (list(SAFE_VALUES) + list(FORCED) + ["restore_command"],),
                ).fetchall()
            )
            restore_command = rows.pop("restore_command", None)
            # PostgreSQL's own parse of the files, now: it must give what the in-process read saw before start
            # (the forced command line kept the server safe meanwhile; conf_scan.py)
            misread = self._misread(conn) if self.scanned is not None else {}
            active = conn.execute("select slot_name from pg_replication_slots where active").fetchall()
            slots = conn.execute("select count(*) from pg_replication_slots").fetchone()[0]
            subs = conn.execute("select count(*) from pg_subscription where subenabled").fetchone()[0]
        bad = {k: v for k, v in rows.items() if str(v).lower() not in SAFE_VALUES.get(k, (FORCED.get(k),))}
        if self.restore_command is not None and restore_command != self.restore_command:
            bad["restore_command"] = restore_command
        if misread:
            what = ", ".join(
                f"{k}={got!r} (read {want!r} before start)" for k, (got, want) in sorted(misread.items())
            )
            raise ClusterUnsafe(
                f"PostgreSQL reads the restored cluster's configuration files as {what}: the pre-start check read "
                "them differently; the server ran with drillbook's forced values only and is stopped"
            )
        if bad or active:
            what = ", ".join(
                [f"{k}={v!r}" for k, v in sorted(bad.items())] + [f"active slot {r[0]!r}" for r in active]
            )
            raise ClusterUnsafe(
                f"the started scratch cluster reports {what}: it could archive or replicate; stopped"
            )
        return {
            "settings": rows,
            "restore_command": restore_command,
            "replication_slots": slots,
            "enabled_subscriptions_held_off": subs,
        }

    def _misread(self, conn: Any) -> dict[str, tuple[str | None, str | None]]:
        """Each checked setting whose value in the files (pg_file_settings, the last line wins) differs from what
        the in-process read saw before start: name -> (PostgreSQL's value, the scan's); absent is None."""
        assert self.scanned is not None
        names = [*self._safe_names(), *(RECOVERY_TARGETS if self._recovery is not None else ())]
        rows = conn.execute(
            "select lower(name), setting from pg_file_settings where lower(name) = any(%s) order by seqno",
            (names,),
        ).fetchall()
        parsed: dict[str, str | None] = {}
        for name, setting in rows:
            parsed[name] = setting
        return {
            n: (parsed.get(n), self.scanned.get(n)) for n in names if parsed.get(n) != self.scanned.get(n)
        }

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
