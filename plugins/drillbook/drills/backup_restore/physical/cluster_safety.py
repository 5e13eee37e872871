"""Refuse, before start and after, a restored physical cluster that could archive or replicate towards production.

Rules this module enforces:
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
- the hot-standby limits (max_connections, …) are taken from the restored
  ``pg_control`` (``pg_controldata``) so recovery is never refused for them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drillbook.drills.backup_restore.physical import conf_scan
from drillbook.drills.backup_restore.physical.restored import RestoredCluster
from drillbook.errors import DrillbookError

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


class SafeCluster(RestoredCluster):
    """The scratch cluster's own configuration and the checks that refuse what could reach production."""

    def __init__(self, *, user: Any, superuser: str = "postgres"):
        super().__init__(user=user, superuser=superuser)
        #: the recovery target settings the restore wrote (assert_safe_before_start), forced at start
        self._recovery: dict[str, str] | None = None
        #: the restore_command the restore tool wrote and its check accepted, pinned on the command line at start
        self.restore_command: str | None = None
        #: what the in-process read found in the files before start; None when ``postgres -C`` read them
        self.scanned: dict[str, str] | None = None

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

        ``restore_command``: the one the restore tool wrote and its source accepted (pgbackrest.py, barman_recover.py);
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
