"""Check that the WAL a physical backup needs is in the archive, contiguous, and remember what was checked.

Rules this module enforces:
- a segment name is timeline (8 hex) + log (8 hex) + segment (8 hex); with a
  segment size of S bytes a log holds ``0x100000000 // S`` segments, so the
  successor of ``…/0000000A/000000FF`` (16 MB) is ``…/0000000B/00000000``;
- the archive is read as a stream of sorted names (``list_archived_wal``);
  memory holds one name at a time, never the listing;
- from the backup's start segment to the newest archived segment of its
  timeline the names must follow each other without a hole: the first name
  that should have been there and is not is the ``WAL_GAP`` (a hole after the
  target matters too: recovery to ``latest`` or to a later target needs it);
  a backup whose own start..stop segments are not archived is a gap as well;
- what was verified is remembered in a small JSON state file per (tool,
  repository) under the drill's state directory: the next run lists only
  segments after the last one verified, on the same timeline, for a backup
  that starts no earlier than the one it was made for (else the archive was
  re-created). A state file that does not parse is ignored (everything is
  checked again), never trusted; a segment deleted after it was remembered is
  caught when recovery ends before it (recover_phases.py, ``WAL_GAP``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from drillbook.drills.backup_restore.physical.source import WAL_NAME_RE, BackupSet, PhysicalSource

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024


def segments_per_log(segment_size: int) -> int:
    if segment_size <= 0 or segment_size & (segment_size - 1) or not 1 << 20 <= segment_size <= 1 << 30:
        raise ValueError(f"wal_segment_size must be a power of two between 1 MB and 1 GB, got {segment_size}")
    return 0x100000000 // segment_size


def split(name: str) -> tuple[int, int, int]:
    if not WAL_NAME_RE.match(name):
        raise ValueError(f"expected a WAL segment name of 24 hex digits, got {name!r}")
    return int(name[:8], 16), int(name[8:16], 16), int(name[16:], 16)


def next_segment(name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    tli, log, seg = split(name)
    seg += 1
    if seg >= segments_per_log(segment_size):
        log, seg = log + 1, 0
    return f"{tli:08X}{log:08X}{seg:08X}"


@dataclass
class ArchiveReport:
    first: str  # first segment checked (or the remembered one after which checking resumed)
    last: str | None  # newest contiguous segment seen
    checked: int  # segments read this run
    gap: str | None  # first missing segment, or None
    resumed_after: str | None  # the remembered segment this run started after

    def describe(self) -> str:
        where = f"after remembered {self.resumed_after}" if self.resumed_after else f"from {self.first}"
        if self.gap:
            return f"WAL gap: {self.gap} missing ({self.checked} segment(s) read {where})"
        return f"{self.checked} segment(s) contiguous {where} through {self.last}"


def _state_path(state_dir: Path, key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:120]
    return state_dir / f"wal-verified-{safe}.json"


def load_verified(
    state_dir: Path | None, key: str, timeline: int, backup_start: str | None = None
) -> str | None:
    """The remembered segment, or None. With ``backup_start``: only when the memory was made for a backup that
    starts at or before it (the newest backup of one archive never starts earlier than an older one; a lower
    start means the stanza or repository was re-created and the memory describes an archive that is gone)."""
    if state_dir is None:
        return None
    try:
        data = json.loads(_state_path(state_dir, key).read_text())
        last = data["verified_through"]
        since = data.get("backup_start")
        if backup_start is not None and not (
            isinstance(since, str) and WAL_NAME_RE.match(since) and since <= backup_start <= last
        ):
            return None
        if isinstance(last, str) and WAL_NAME_RE.match(last) and split(last)[0] == timeline:
            return last
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def save_verified(state_dir: Path | None, key: str, last: str, backup_start: str | None = None) -> None:
    if state_dir is None:
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    path = _state_path(state_dir, key)
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".wal-verified-")
    with os.fdopen(fd, "w") as fh:
        json.dump({"verified_through": last, "backup_start": backup_start}, fh)
    os.replace(tmp, path)  # atomic: a killed drill leaves the old state or the new one


def check_contiguous(
    names: Iterable[str], *, expect_first: str, segment_size: int, must_reach: str | None = None
) -> tuple[str | None, str | None, int]:
    """(gap, last, count): walk sorted ``names`` from ``expect_first``; the first hole is the gap.

    Names before ``expect_first`` are skipped; ``must_reach`` (the backup's stop segment)
    must be covered, else the segment after the last one seen is the gap.
    """
    expected = expect_first
    last: str | None = None
    count = 0
    for name in names:
        if name < expected:
            continue
        if split(name)[0] != split(expected)[0]:
            break  # another timeline: this check follows the backup's
        if name != expected:
            return expected, last, count
        last = name
        count += 1
        expected = next_segment(name, segment_size)
    if must_reach is not None and (last is None or last < must_reach):
        return expected, last, count
    return None, last, count


def check_archive(
    source: PhysicalSource, backup: BackupSet, *, state_dir: Path | None, key: str
) -> ArchiveReport:
    """Check the archive of ``source`` for ``backup`` (see the module docstring); remember the result."""
    remembered = load_verified(state_dir, key, backup.timeline, backup.start_wal)
    resume = remembered if remembered is not None and remembered >= backup.start_wal else None
    expect_first = next_segment(resume, backup.wal_segment_size) if resume else backup.start_wal
    names = source.list_archived_wal(backup, resume)
    gap, last, count = check_contiguous(
        names,
        expect_first=expect_first,
        segment_size=backup.wal_segment_size,
        must_reach=backup.stop_wal if not resume or resume < backup.stop_wal else None,
    )
    last = last or resume
    if gap is None and last is not None:
        save_verified(state_dir, key, last, backup.start_wal)
    elif gap is not None and last is not None and last > (remembered or ""):
        save_verified(
            state_dir, key, last, backup.start_wal
        )  # what precedes the hole was verified; the hole is checked again next run
    return ArchiveReport(first=backup.start_wal, last=last, checked=count, gap=gap, resumed_after=resume)
