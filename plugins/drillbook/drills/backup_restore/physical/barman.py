"""The Barman physical source: locate a server's newest backup and list its WAL (recovery: barman_recover.py).

Rules this module enforces:
- every answer of ``barman`` is untrusted input: JSON from ``barman -f json
  list-backups / show-backup / show-servers``, the ``xlog.db`` catalogue and
  the names in the ``wals`` directory are validated field by field (``require_*``
  of source.py); a bad field is a ``PhysicalSourceError`` naming the command,
  the key, what was expected and what was found, never a traceback;
- the archive listing streams one WAL directory (at most 256 names) at a
  time, so memory stays flat in the archive's size.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from drillbook.drills.backup_restore.physical.barman_command import BACKUP_ID_RE, TOOL
from drillbook.drills.backup_restore.physical.barman_recover import BarmanRecover
from drillbook.drills.backup_restore.physical.source import (
    WAL_NAME_RE,
    BackupSet,
    PhysicalSourceError,
    Target,
    TargetLsn,
    WalRange,
    require_int,
    require_str,
    require_wal,
)

WAL_DIR_RE = re.compile(r"^[0-9A-F]{16}$")


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


class Barman(BarmanRecover):
    """One server of a Barman configuration, driven through the ``barman`` command (see the module docstring)."""

    tool = TOOL

    def describe(self) -> str:
        return f"barman server {self.server!r} ({self.config})"

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
