"""The seam every physical backup tool implements: locate a backup set, name its WAL, restore it.

Rules this module enforces:
- one module per tool (pgbackrest.py, barman.py; WAL-G and RDS later) exposes a
  class satisfying ``PhysicalSource``; the drill knows nothing tool-specific;
- what a tool answers (``pgbackrest info --output=json``, ``barman
  list-backups --format=json``) is untrusted input: a source validates every
  field it uses with ``require_*`` below and raises ``PhysicalSourceError``
  naming the tool, the key, what was expected and what was found;
- WAL segment names are 24 upper-case hex digits (timeline, log, segment);
  anything else is refused before it reaches a path or a command line;
- ``restore`` writes only into the data directory it is given and never
  touches the source cluster; it returns the recovery settings it wrote so
  the cluster module can check them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from drillbook.errors import DrillbookError

WAL_NAME_RE = re.compile(r"^[0-9A-F]{24}$")
#: A label/stanza/server name that may go onto a command line (no option injection, no path separators).
SAFE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class PhysicalSourceError(DrillbookError):
    """A physical source could not answer; ``code`` is the finding it becomes (BACKUP_MISSING, RESTORE_FAILED, ...)."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class BackupSet:
    """One backup set as the tool describes it (already validated)."""

    label: str
    start_time: datetime
    stop_time: datetime
    start_wal: str
    stop_wal: str
    pg_major: int | None
    size_bytes: int | None
    timeline: int
    wal_segment_size: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class Latest:
    """Recover to the end of the archive."""

    def describe(self) -> str:
        return "latest"


@dataclass(frozen=True)
class TargetTime:
    time: datetime

    def describe(self) -> str:
        return f"time {self.time.isoformat()}"


@dataclass(frozen=True)
class TargetName:
    name: str

    def describe(self) -> str:
        return f"restore point {self.name!r}"


@dataclass(frozen=True)
class TargetLsn:
    lsn: str

    def describe(self) -> str:
        return f"lsn {self.lsn}"


Target = Latest | TargetTime | TargetName | TargetLsn


@dataclass(frozen=True)
class WalRange:
    """Segments from ``first`` to ``last`` inclusive; ``last`` None = through the end of the archive."""

    first: str
    last: str | None
    timeline: int


@dataclass(frozen=True)
class RestoreInfo:
    datadir: Path
    recovery_conf_written: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@runtime_checkable
class PhysicalSource(Protocol):
    """What the physical drill needs from a backup tool (see the module docstring)."""

    tool: str  # "pgbackrest" | "barman"

    def describe(self) -> str:
        """A short, secret-free name of the repository for reports (``pgbackrest stanza 'main' repo 1``)."""
        ...

    def locate(self) -> BackupSet:
        """The newest backup set; ``PhysicalSourceError('BACKUP_MISSING', ...)`` when there is none."""
        ...

    def wal_segments_needed(self, backup: BackupSet, target: Target) -> WalRange:
        """The segments recovery of ``backup`` to ``target`` must replay."""
        ...

    def list_archived_wal(self, backup: BackupSet, after: str | None) -> Iterator[str]:
        """Segment names in the archive for the backup's timeline, sorted, only those > ``after``."""
        ...

    def restore(
        self, backup: BackupSet, target: Target, datadir: Path, *, env: Mapping[str, str], timeout_s: float
    ) -> RestoreInfo:
        """Restore ``backup`` into the empty ``datadir`` with recovery settings for ``target``."""
        ...


# --- helpers for validating a tool's untrusted answer -------------------------------------
def where(tool: str, key: str) -> str:
    return f"{tool} answer key {key!r}"


def require_str(value: object, *, tool: str, key: str, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or not value or (pattern is not None and not pattern.match(value)):
        expected = f"a string matching {pattern.pattern}" if pattern is not None else "a non-empty string"
        raise PhysicalSourceError(
            "BACKUP_MISSING", f"{where(tool, key)}: expected {expected}, got {str(value)[:80]!r}"
        )
    return value


def require_int(
    value: object, *, tool: str, key: str, minimum: int = 0, optional: bool = False
) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PhysicalSourceError(
            "BACKUP_MISSING", f"{where(tool, key)}: expected an integer >= {minimum}, got {str(value)[:80]!r}"
        )
    return value


def require_wal(value: object, *, tool: str, key: str) -> str:
    return require_str(value, tool=tool, key=key, pattern=WAL_NAME_RE)


def require_epoch(value: object, *, tool: str, key: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 32503680000:
        raise PhysicalSourceError(
            "BACKUP_MISSING", f"{where(tool, key)}: expected a Unix timestamp, got {str(value)[:80]!r}"
        )
    return datetime.fromtimestamp(value, tz=UTC)


def wal_timeline(name: str) -> int:
    return int(name[:8], 16)


def parse_target(spec: object) -> Target:
    """The catalogue's ``backup.target`` (already validated by the model) as a ``Target``."""
    if spec is None or spec == "latest":
        return Latest()
    time = getattr(spec, "time", None)
    if time is not None:
        return TargetTime(time if time.tzinfo else time.replace(tzinfo=UTC))
    name = getattr(spec, "name", None)
    if name is not None:
        return TargetName(name)
    lsn = getattr(spec, "lsn", None)
    if lsn is not None:
        return TargetLsn(lsn)
    raise ValueError(f"unknown recovery target {spec!r}")
