"""WAL contiguity and the remembered state (pure logic: names in, gap out) and the physical catalogue keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from drillbook.drills.backup_restore.catalogue import BackupSpec
from drillbook.drills.backup_restore.physical import archive_check as ac
from drillbook.drills.backup_restore.physical.source import BackupSet, Latest, TargetTime, parse_target


def seg(log: int, n: int, tli: int = 1) -> str:
    return f"{tli:08X}{log:08X}{n:08X}"


def test_next_segment_wraps_the_log_by_segment_size() -> None:
    assert ac.next_segment(seg(0, 0xFE)) == seg(0, 0xFF)
    assert ac.next_segment(seg(0, 0xFF)) == seg(1, 0)
    assert ac.next_segment(seg(0, 3), 1 << 30) == seg(1, 0)  # 1 GB segments: 4 per log
    with pytest.raises(ValueError, match="24 hex"):
        ac.next_segment("../../etc/passwd")
    with pytest.raises(ValueError, match="power of two"):
        ac.next_segment(seg(0, 1), 3_000_000)


def test_contiguous_archive_has_no_gap_and_one_hole_is_named() -> None:
    names = [seg(0, n) for n in range(0xFD, 0x100)] + [seg(1, 0), seg(1, 1)]
    assert ac.check_contiguous(
        iter(names), expect_first=seg(0, 0xFD), segment_size=ac.DEFAULT_SEGMENT_SIZE
    ) == (None, seg(1, 1), 5)
    holed = [n for n in names if n != seg(1, 0)]
    gap, last, count = ac.check_contiguous(
        iter(holed), expect_first=seg(0, 0xFD), segment_size=ac.DEFAULT_SEGMENT_SIZE
    )
    assert (gap, last, count) == (seg(1, 0), seg(0, 0xFF), 3)


def test_backup_stop_segment_missing_is_a_gap() -> None:
    gap, _, _ = ac.check_contiguous(
        iter([seg(0, 2)]), expect_first=seg(0, 2), segment_size=ac.DEFAULT_SEGMENT_SIZE, must_reach=seg(0, 3)
    )
    assert gap == seg(0, 3)


class _Listing:
    """A PhysicalSource whose archive is a list of names (the archive check reads only ``list_archived_wal``)."""

    tool = "list"

    def __init__(self, names: list[str]):
        self.names = names
        self.calls: list[str | None] = []

    def list_archived_wal(self, backup: BackupSet, after: str | None) -> Iterator[str]:
        self.calls.append(after)
        return (n for n in self.names if after is None or n > after)


def _backup() -> BackupSet:
    now = datetime.now(UTC)
    return BackupSet(
        label="b",
        start_time=now,
        stop_time=now,
        start_wal=seg(0, 2),
        stop_wal=seg(0, 2),
        pg_major=15,
        size_bytes=1,
        timeline=1,
    )


def test_second_run_reads_only_new_segments_and_a_broken_state_file_is_ignored(tmp_path: Path) -> None:
    src = _Listing([seg(0, n) for n in range(1, 6)])
    first = ac.check_archive(src, _backup(), state_dir=tmp_path, key="k")  # type: ignore[arg-type]
    assert (first.gap, first.last, first.checked) == (None, seg(0, 5), 4)
    src.names.append(seg(0, 6))
    second = ac.check_archive(src, _backup(), state_dir=tmp_path, key="k")  # type: ignore[arg-type]
    assert (second.gap, second.resumed_after, second.checked) == (None, seg(0, 5), 1)
    src.names.append(seg(0, 8))  # 7 never archived
    third = ac.check_archive(src, _backup(), state_dir=tmp_path, key="k")  # type: ignore[arg-type]
    assert third.gap == seg(0, 7)
    again = ac.check_archive(src, _backup(), state_dir=tmp_path, key="k")  # type: ignore[arg-type]
    assert again.gap == seg(0, 7), "a gap is reported on every run until it is filled"
    for path in tmp_path.iterdir():
        path.write_text("{not json")
    fresh = ac.check_archive(src, _backup(), state_dir=tmp_path, key="k")  # type: ignore[arg-type]
    assert fresh.resumed_after is None and fresh.gap == seg(0, 7)


def test_catalogue_physical_keys() -> None:
    spec = BackupSpec.model_validate(
        {
            "pgbackrest": {"stanza": "main"},
            "target": {"time": "2026-11-30T02:00:00Z"},
            "pitr_proof": {"must_exist": "select 1"},
        }
    )
    assert isinstance(parse_target(spec.target), TargetTime) and spec.where == "pgbackrest:main@repo1"
    assert isinstance(
        parse_target(BackupSpec.model_validate({"barman": {"server": "pg-main"}}).target), Latest
    )
    bad = [
        ({"pgbackrest": {"stanza": "--repo1-path=/x"}}, "stanza name"),
        ({"pgbackrest": {"stanza": "m"}, "location": "/x"}, "exactly one"),
        ({}, "exactly one"),
        ({"location": "/x", "target": {"name": "before"}}, "only to physical"),
        ({"pgbackrest": {"stanza": "m"}, "target": {"lsn": "nonsense"}}, "LSN"),
        ({"pgbackrest": {"stanza": "m"}, "pitr_proof": {}}, "must_exist"),
        ({"pgbackrest": {"stanza": "m", "stnza": "x"}}, "Extra inputs"),
    ]
    for data, message in bad:
        with pytest.raises(ValidationError, match=message):
            BackupSpec.model_validate(data)


def test_a_state_file_from_another_archive_is_not_trusted(tmp_path: Path) -> None:
    """A stanza re-created (or a repository replaced) under the same name starts its WAL lower than what was
    remembered: the memory belongs to an archive that no longer exists and must not skip the new one."""
    old = BackupSet(
        label="old",
        start_time=datetime.now(UTC),
        stop_time=datetime.now(UTC),
        start_wal=seg(0x10, 2),
        stop_wal=seg(0x10, 2),
        pg_major=15,
        size_bytes=1,
        timeline=1,
    )
    src = _Listing([seg(0x10, n) for n in range(1, 6)])
    assert ac.check_archive(src, old, state_dir=tmp_path, key="k").last == seg(0x10, 5)  # type: ignore[arg-type]
    src.names = [seg(0, n) for n in range(1, 4)]  # the new archive
    new = ac.check_archive(src, _backup(), state_dir=tmp_path, key="k")  # type: ignore[arg-type]
    assert new.resumed_after is None and (new.gap, new.last, new.checked) == (None, seg(0, 3), 2)
    legacy = next(tmp_path.iterdir())  # a memory that does not say which backup it was made for is not used
    legacy.write_text(json.dumps({"verified_through": seg(0, 3)}))
    assert ac.check_archive(src, _backup(), state_dir=tmp_path, key="k").resumed_after is None  # type: ignore[arg-type]
