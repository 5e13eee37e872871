"""The Barman physical source: locate a server's newest backup, list its WAL, recover it locally.

Rules this module enforces:
- every answer of ``barman`` is untrusted input: JSON from ``barman -f json
  list-backups / show-backup / show-servers``, the ``xlog.db`` catalogue and
  the names in the ``wals`` directory are validated field by field (``require_*``
  of source.py); a bad field is a ``PhysicalSourceError`` naming the command,
  the key, what was expected and what was found, never a traceback;
- Barman only ever runs locally: ``barman recover`` gets ``--no-get-wal`` (the
  WAL recovery needs is copied into ``barman_wal/`` of the data directory and
  ``restore_command`` is a plain ``cp``) and never ``--remote-ssh-command``; a
  ``restore_command`` other than that ``cp`` in the recovered directory is
  refused, so the restored cluster cannot reach back into the repository;
- Barman refuses to run as any user but its config's ``barman_user``: as root
  it runs as ``os_user`` of the catalogue or else that ``barman_user``
  (default ``barman``, the Debian package's user), with a bare environment and
  no supplementary groups, so the tool never sees the drill's secrets;
- ``recover`` writes into a private staging directory that user owns (a
  cluster's data directory is 0700 of another user) and the result is moved
  into the data directory and handed to its owner; the staging directory is
  removed whatever happened;
- the archive listing streams one WAL directory (at most 256 names) at a
  time, so memory stays flat in the archive's size.
"""

from __future__ import annotations

import configparser
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from drillbook.drills.backup_restore.lifetime import run_in_group
from drillbook.drills.backup_restore.physical import conf_scan
from drillbook.drills.backup_restore.physical.source import (
    SAFE_NAME_RE,
    WAL_NAME_RE,
    BackupSet,
    Latest,
    PhysicalSourceError,
    RestoreInfo,
    Target,
    TargetLsn,
    TargetName,
    TargetTime,
    WalRange,
    require_int,
    require_str,
    require_wal,
)
from drillbook.safety.redact import redact

TOOL = "barman"
COMMAND_TIMEOUT_S = 120.0
MAX_OUTPUT = 8 * 1024 * 1024  # a list-backups answer of thousands of backups is a few MB at most
BACKUP_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}$")
WAL_DIR_RE = re.compile(r"^[0-9A-F]{16}$")
# what ``barman recover --no-get-wal`` writes for a local recovery; anything else could reach the repository
LOCAL_RESTORE_COMMAND = "cp barman_wal/%f %p"


def _bare_env(user: pwd.struct_passwd | None) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "HOME": user.pw_dir if user else "/",
    }


def _parse_time(value: object, *, key: str) -> datetime:
    text = require_str(value, tool=TOOL, key=key)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise PhysicalSourceError(
            "BACKUP_MISSING",
            f"barman answer key {key!r}: expected an ISO time with a zone, got {text[:80]!r}",
        )
    return parsed


def _lsn_segment(lsn: str, timeline: int, segment_size: int) -> str:
    high, low = (int(part, 16) for part in lsn.split("/"))
    segno = ((high << 32) | low) // segment_size
    per_log = 0x100000000 // segment_size
    return f"{timeline:08X}{segno // per_log:08X}{segno % per_log:08X}"


class Barman:
    """One server of a Barman configuration, driven through the ``barman`` command (see the module docstring)."""

    tool = TOOL

    def __init__(
        self,
        *,
        server: str,
        config: str,
        os_user: str | None = None,
        env: Mapping[str, str] | None = None,
        barman_bin: str | None = None,
    ) -> None:
        # Barman reads no secret from the environment (conninfo is in its config, passwords in the
        # barman user's ~/.pgpass): ``env`` is accepted for the seam and never passed to it
        del env
        self.server = require_str(server, tool=TOOL, key="server", pattern=SAFE_NAME_RE)
        self.config = config
        self.os_user = os_user
        self._barman_bin = barman_bin
        self._server_cache: dict[str, Any] | None = None  # show-servers, asked once per drill

    def describe(self) -> str:
        return f"barman server {self.server!r} ({self.config})"

    # --- running barman --------------------------------------------------------------
    def _user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None  # Barman itself refuses when this user is not its barman_user
        name = self.os_user or self._configured_user()
        try:
            return pwd.getpwnam(name)
        except KeyError:
            raise PhysicalSourceError(
                "RESTORE_FAILED",
                f"barman must run as OS user {name!r} (barman_user of {self.config}), which does not exist",
            ) from None

    def _configured_user(self) -> str:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with open(self.config, encoding="utf-8") as handle:
                parser.read_file(handle)
        except (OSError, UnicodeDecodeError, configparser.Error) as exc:
            raise PhysicalSourceError(
                "BACKUP_MISSING", f"barman config {self.config!r} could not be read: {exc}"
            ) from None
        user = parser.get("barman", "barman_user", fallback="barman").strip()
        if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", user):
            raise PhysicalSourceError(
                "BACKUP_MISSING",
                f"barman config {self.config!r} key 'barman_user': expected an OS user name, got {user[:40]!r}",
            )
        return user

    def _binary(self) -> str:
        found = self._barman_bin or shutil.which("barman", path="/usr/local/bin:/usr/bin:/bin")
        if not found:
            raise PhysicalSourceError(
                "RESTORE_FAILED",
                "the barman command is not installed on this worker (Debian: apt-get install barman)",
            )
        return found

    def _run(
        self,
        *args: str,
        timeout_s: float = COMMAND_TIMEOUT_S,
        code: str = "BACKUP_MISSING",
    ) -> str:
        user = self._user()
        argv = [self._binary(), "-c", self.config, *args]
        try:
            proc = run_in_group(  # barman recover copies with rsync: its children die with the drill too
                argv,
                timeout=timeout_s,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
                env=_bare_env(user),
                cwd="/",
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise PhysicalSourceError(
                code,
                f"barman {args[-1] if args else ''} for server {self.server!r} did not finish within {timeout_s:.0f} s",
            ) from None
        except OSError as exc:
            raise PhysicalSourceError(
                code, f"barman for server {self.server!r} could not be started: {exc}"
            ) from None
        out = proc.stdout[:MAX_OUTPUT].decode("utf-8", errors="replace")
        if proc.returncode != 0:
            tail = (proc.stderr.decode("utf-8", errors="replace").strip() or out.strip())[-800:]
            raise PhysicalSourceError(
                code, redact(f"barman {' '.join(args)} exited {proc.returncode}: {tail}")
            )
        if len(proc.stdout) > MAX_OUTPUT:
            raise PhysicalSourceError(
                code, f"barman {' '.join(args)} answered more than {MAX_OUTPUT} bytes; refusing to parse it"
            )
        return out

    def _json(self, *args: str) -> Any:
        text = self._run("-f", "json", *args)
        try:
            answer = json.loads(text)
        except ValueError:
            raise PhysicalSourceError(
                "BACKUP_MISSING", redact(f"barman {' '.join(args)}: expected JSON, got {text[:120]!r}")
            ) from None
        if not isinstance(answer, dict) or self.server not in answer:
            raise PhysicalSourceError(
                "BACKUP_MISSING",
                f"barman {' '.join(args)}: expected an object keyed by server {self.server!r}, got {str(answer)[:120]!r}",
            )
        return answer[self.server]

    # --- PhysicalSource ------------------------------------------------------------------
    def locate(self) -> BackupSet:
        """The newest DONE backup of the server, from ``list-backups`` and ``show-backup``.

        Each ``barman`` start-up costs about a second or more (Python and Barman's imports), and there are
        three questions: ``list-backups``, ``show-servers`` and ``show-backup latest`` are asked at once;
        ``latest``'s answer is used only when it is the backup chosen from the list (Barman's ``latest`` may
        be a backup still WAITING_FOR_WALS, and one may finish in between), else the chosen one is shown.
        """
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=3) as pool:
            listed_f = pool.submit(self._json, "list-backups", self.server)
            latest_f = pool.submit(self._json, "show-backup", self.server, "latest")
            server_f = pool.submit(self._server_info)
            chosen = self._choose(listed_f.result())
            try:
                latest = latest_f.result()
            except PhysicalSourceError:
                latest = None  # no backup at all, or an answer that is checked again below
            server_f.result()  # its error, if any, is the drill's (the segment size needs it)
        backup_id, size = chosen
        if not (isinstance(latest, dict) and latest.get("backup_id") == backup_id):
            latest = None
        return self._show(backup_id, size, latest)

    def _choose(self, listed: Any) -> tuple[str, int | None]:
        """(id, size) of the newest DONE backup in a ``list-backups`` answer."""
        if not isinstance(listed, list):
            raise PhysicalSourceError(
                "BACKUP_MISSING",
                f"barman list-backups {self.server}: expected a list of backups, got {str(listed)[:120]!r}",
            )
        done: list[tuple[int, str, int | None]] = []
        for index, entry in enumerate(listed):
            key = f"list-backups[{index}]"
            if not isinstance(entry, dict):
                raise PhysicalSourceError(
                    "BACKUP_MISSING",
                    f"barman answer key {key!r}: expected an object, got {str(entry)[:80]!r}",
                )
            if entry.get("status") != "DONE":
                continue  # FAILED, WAITING_FOR_WALS, STARTED: not a backup to recover from
            backup_id = require_str(
                entry.get("backup_id"), tool=TOOL, key=f"{key}.backup_id", pattern=BACKUP_ID_RE
            )
            end = require_str(
                entry.get("end_time_timestamp"),
                tool=TOOL,
                key=f"{key}.end_time_timestamp",
                pattern=re.compile(r"^[0-9]{1,12}$"),
            )
            size = require_int(entry.get("size_bytes"), tool=TOOL, key=f"{key}.size_bytes", optional=True)
            done.append((int(end), backup_id, size))
        if not done:
            raise PhysicalSourceError(
                "BACKUP_MISSING",
                f"barman server {self.server!r} has no backup with status DONE ({len(listed)} listed)",
            )
        _, backup_id, size = max(done)
        return backup_id, size

    def _show(self, backup_id: str, size: int | None, shown: Any = None) -> BackupSet:
        if shown is None:
            shown = self._json("show-backup", self.server, backup_id)
        if not isinstance(shown, dict):
            raise PhysicalSourceError(
                "BACKUP_MISSING",
                f"barman show-backup {backup_id}: expected an object, got {str(shown)[:120]!r}",
            )
        if shown.get("backup_id") != backup_id or shown.get("status") != "DONE":
            raise PhysicalSourceError(
                "BACKUP_MISSING",
                f"barman show-backup {backup_id}: expected backup {backup_id!r} with status DONE, got {shown.get('backup_id')!r} {shown.get('status')!r}",
            )
        base = shown.get("base_backup_information")
        if not isinstance(base, dict):
            raise PhysicalSourceError(
                "BACKUP_MISSING",
                f"barman answer key 'base_backup_information' of {backup_id}: expected an object, got {str(base)[:80]!r}",
            )
        version = require_int(
            shown.get("postgresql_version"), tool=TOOL, key="postgresql_version", minimum=90000, optional=True
        )
        timeline = require_int(
            base.get("timeline"), tool=TOOL, key="base_backup_information.timeline", minimum=1
        )
        start_wal = require_wal(base.get("begin_wal"), tool=TOOL, key="base_backup_information.begin_wal")
        stop_wal = require_wal(base.get("end_wal"), tool=TOOL, key="base_backup_information.end_wal")
        start = _parse_time(base.get("begin_time"), key="base_backup_information.begin_time")
        stop = _parse_time(base.get("end_time"), key="base_backup_information.end_time")
        if stop < start or stop_wal < start_wal or int(start_wal[:8], 16) != timeline:
            raise PhysicalSourceError(
                "BACKUP_MISSING",
                f"barman show-backup {backup_id}: inconsistent backup "
                f"(begin {start.isoformat()} {start_wal}, end {stop.isoformat()} {stop_wal}, timeline {timeline})",
            )
        return BackupSet(
            label=backup_id,
            start_time=start,
            stop_time=stop,
            start_wal=start_wal,
            stop_wal=stop_wal,
            pg_major=(version // 10000 if version and version >= 100000 else None),
            size_bytes=size,
            timeline=timeline or 1,
            wal_segment_size=self._backup_segment_size(backup_id),
        )

    def _backup_segment_size(self, backup_id: str) -> int:
        """``xlog_segment_size`` of the backup's ``backup.info`` (16 MB when Barman did not record it)."""
        shown = self._server_info()
        base = require_str(shown.get("basebackups_directory"), tool=TOOL, key="basebackups_directory")
        info = Path(base) / backup_id / "backup.info"
        if not Path(base).is_absolute() or not info.is_file():
            return 16 * 1024 * 1024
        with info.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.startswith("xlog_segment_size="):
                    text = line.split("=", 1)[1].strip()
                    size = int(text) if text.isdigit() else 0
                    if size < 1 << 20 or size > 1 << 30 or size & (size - 1):
                        raise PhysicalSourceError(
                            "BACKUP_MISSING",
                            f"barman {info} key 'xlog_segment_size': expected a power of two from 1 MB to 1 GB, got {text[:40]!r}",
                        )
                    return size
        return 16 * 1024 * 1024

    def _server_info(self) -> dict[str, Any]:
        if self._server_cache is None:
            shown = self._json("show-servers", self.server)
            if not isinstance(shown, dict):
                raise PhysicalSourceError(
                    "BACKUP_MISSING",
                    f"barman show-servers {self.server}: expected an object, got {str(shown)[:120]!r}",
                )
            self._server_cache = shown
        return self._server_cache

    def _wals_directory(self) -> Path:
        text = require_str(self._server_info().get("wals_directory"), tool=TOOL, key="wals_directory")
        path = Path(text)
        if not path.is_absolute() or ".." in path.parts or not path.is_dir():
            raise PhysicalSourceError(
                "WAL_GAP",
                f"barman server {self.server!r}: wals_directory {text!r} is not an existing absolute directory",
            )
        return path

    def wal_segments_needed(self, backup: BackupSet, target: Target) -> WalRange:
        """From the backup's first segment to the one recovery to ``target`` ends in (None: end of archive).

        Only an LSN names its last segment. Recovery to a time or a restore point
        stops at the first commit after it, which may sit in any later segment,
        and ``restore`` hands recovery the whole archive: the whole archive must
        be contiguous.
        """
        last: str | None = None
        if isinstance(target, TargetLsn):
            last = max(_lsn_segment(target.lsn, backup.timeline, backup.wal_segment_size), backup.stop_wal)
        return WalRange(first=backup.start_wal, last=last, timeline=backup.timeline)

    def list_archived_wal(self, backup: BackupSet, after: str | None) -> Iterator[str]:
        """Segments present in Barman's ``wals`` directory for the backup's timeline, sorted, > ``after``."""
        wals = self._wals_directory()
        prefix = f"{backup.timeline:08X}"
        floor = max(after or "", backup.start_wal)
        with os.scandir(wals) as entries:
            dirs = sorted(
                e.name
                for e in entries
                if e.is_dir(follow_symlinks=False) and WAL_DIR_RE.match(e.name) and e.name.startswith(prefix)
            )
        for directory in dirs:
            if directory < floor[:16]:
                continue
            with os.scandir(wals / directory) as entries:
                names = sorted(
                    e.name for e in entries if WAL_NAME_RE.match(e.name) and e.is_file(follow_symlinks=False)
                )
            for name in names:
                if name >= backup.start_wal and (after is None or name > after):
                    yield name

    def restore(
        self, backup: BackupSet, target: Target, datadir: Path, *, env: Mapping[str, str], timeout_s: float
    ) -> RestoreInfo:
        """``barman recover`` of ``backup`` to ``target`` into ``datadir``, WAL copied locally, recovery pausing at a target.

        ``env`` is not passed to Barman (see ``__init__``).
        """
        require_str(backup.label, tool=TOOL, key="backup label", pattern=BACKUP_ID_RE)
        if datadir.exists() and any(datadir.iterdir()):
            raise PhysicalSourceError(
                "RESTORE_FAILED", f"restore target {str(datadir)!r} is not empty; refusing to recover into it"
            )
        if isinstance(target, TargetTime) and target.time < backup.stop_time:
            raise PhysicalSourceError(
                "PITR_TARGET_BEFORE_BACKUP",
                f"target time {target.time.isoformat()} is before the end of barman backup {backup.label!r} "
                f"({backup.stop_time.isoformat()}) of server {self.server!r}",
            )
        recovery = _recovery_settings(target)
        started = time.monotonic()
        user = self._user()
        staging = Path(tempfile.mkdtemp(prefix="drillbook_barman_restore_"))
        try:
            if user is not None:
                os.chown(staging, user.pw_uid, user.pw_gid)
            # the server name and backup id are validated; '--' keeps them from reading as options
            # --target-immediate only for Barman's PITR layout (WAL in barman_wal/, a cp
            # restore_command, recovery.signal) with every archived segment copied: with
            # --target-time Barman copies WAL only up to the first segment archived after the
            # target, which may end before the commit that lets recovery stop there ("recovery
            # ended before configured recovery target was reached"), and without a target it
            # puts WAL in pg_wal for crash recovery. Its target line is replaced below.
            self._run(
                "recover",
                "--no-get-wal",
                "--target-immediate",
                "--",
                self.server,
                backup.label,
                str(staging / "data"),
                timeout_s=timeout_s,
                code="RESTORE_FAILED",
            )
            recovered = staging / "data"
            # None (a symlink, FIFO or oversized file) reads as no settings: its restore_command is refused below
            settings = conf_scan.quoted_settings(recovered / "postgresql.auto.conf") or {}
            restore_command = settings.get("restore_command")
            if restore_command != LOCAL_RESTORE_COMMAND:
                raise PhysicalSourceError(
                    "RESTORE_FAILED",
                    f"barman recover wrote restore_command {str(restore_command)[:120]!r}, expected the local {LOCAL_RESTORE_COMMAND!r}; refusing to start it",
                )
            _set_recovery_target(recovered / "postgresql.auto.conf", recovery)
            settings = {
                k: v
                for k, v in settings.items()
                if not k.startswith(("recovery_target", "recovery_end_command"))
            } | recovery
            _move_into(recovered, datadir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        wanted = {k: v for k, v in settings.items() if k.startswith("recovery_") or k == "restore_command"}
        return RestoreInfo(datadir=datadir, recovery_conf_written=wanted, seconds=time.monotonic() - started)


def _recovery_settings(target: Target) -> dict[str, str]:
    """The recovery_target_* settings for ``target``; recovery pauses there so RPO can be read before promotion."""
    if isinstance(target, Latest):
        return {}
    if isinstance(target, TargetTime):
        setting = {"recovery_target_time": target.time.isoformat(sep=" ")}
    elif isinstance(target, TargetName):
        setting = {"recovery_target_name": target.name}
    elif isinstance(target, TargetLsn):
        setting = {"recovery_target_lsn": target.lsn}
    else:
        raise PhysicalSourceError("RESTORE_FAILED", f"barman cannot recover to target {target!r}")
    return {**setting, "recovery_target_action": "pause"}


def _set_recovery_target(auto_conf: Path, recovery: Mapping[str, str]) -> None:
    """Replace Barman's recovery_target* lines with the drill's (none for latest: replay the whole archive).

    Barman's ``recovery_end_command = 'rm -fr barman_wal'`` goes too: the scratch cluster runs
    no command hook (cluster.py refuses one), and its whole directory is removed at teardown.
    """
    dropped = ("recovery_target", "recovery_end_command")
    kept = [
        line
        for line in auto_conf.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith(dropped)
    ]
    kept += ["# drillbook: the drill's recovery target"] if recovery else []
    kept += [f"{key} = '{value.replace(chr(39), chr(39) * 2)}'" for key, value in recovery.items()]
    auto_conf.write_text("\n".join(kept) + "\n", encoding="utf-8")


def _move_into(recovered: Path, datadir: Path) -> None:
    """Move the recovered files into ``datadir`` and give them to its owner (mode 0700, as PostgreSQL wants)."""
    datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = datadir.stat()
    for entry in os.scandir(recovered):
        shutil.move(entry.path, datadir / entry.name)
    if os.geteuid() == 0:
        for dirpath, dirnames, filenames in os.walk(datadir):
            os.chown(dirpath, owner.st_uid, owner.st_gid)
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), owner.st_uid, owner.st_gid)
    datadir.chmod(0o700)
