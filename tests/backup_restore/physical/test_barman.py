"""The Barman physical source against a real Barman 3.4 server and a real PostgreSQL 15 source.

Healthy: locate picks the newest of two backups; the archive listing is the
segments Barman holds; a time target between two known rows recovers the row
before and not the row after; latest recovers every row. Red: a segment deleted
from Barman's ``wals`` directory is missing from the listing (the gap the archive
check reports as WAL_GAP); a target older than the backup is refused; a recovered
``restore_command`` that could reach the repository is refused.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from drillbook.drills.backup_restore.physical.barman import Barman
from drillbook.drills.backup_restore.physical.barman_recover import LOCAL_RESTORE_COMMAND
from drillbook.drills.backup_restore.physical.source import (
    Latest,
    PhysicalSource,
    PhysicalSourceError,
    TargetLsn,
    TargetName,
    TargetTime,
)
from tests.backup_restore.physical import barman_fixture
from tests.backup_restore.physical.barman_fixture import PG_BIN, BarmanRepo, run_as

barman_repo = (
    barman_fixture.barman_repo
)  # the session fixture, in its own module so h16a's conftest stays theirs


def source_of(repo: BarmanRepo) -> Barman:
    return Barman(server=repo.server, config=str(repo.config), os_user=repo.user)


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    """A directory the test's restored cluster may live in (readable by the unprivileged user)."""
    root = Path(tempfile.mkdtemp(prefix="drillbook_barman_test_"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Restored:
    """A recovered data directory started on a private socket the way the physical drill must: no archiving, no TCP."""

    def __init__(self, datadir: Path, user: str | None):
        self.datadir, self.user = datadir, user
        self.sock = datadir.parent / "sock"
        self.sock.mkdir()
        if user is not None:
            pw = pwd.getpwnam(user)
            os.chown(self.sock, pw.pw_uid, pw.pw_gid)
            os.chown(datadir, pw.pw_uid, pw.pw_gid)

    def start(self) -> None:
        opts = f"-c archive_mode=off -c archive_command='' -c listen_addresses='' -c unix_socket_directories='{self.sock}' -c port=5432"
        argv = [
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.sock / "pg.log"),
            "-o",
            opts,
            "-w",
            "-t",
            "90",
            "start",
        ]
        if run_as(self.user, argv, check=False).returncode != 0:
            raise AssertionError(
                f"the recovered cluster did not start; log: {(self.sock / 'pg.log').read_text()[-3000:]}"
            )

    def sql(self, query: str) -> str:
        return run_as(
            self.user,
            [
                str(PG_BIN / "psql"),
                "-X",
                "-q",
                "-At",
                "-h",
                str(self.sock),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                query,
            ],
        ).stdout.strip()

    def wait_until(self, query: str, expected: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        got = ""
        while time.monotonic() < deadline:
            got = self.sql(query)
            if got == expected:
                return
            time.sleep(0.3)
        raise AssertionError(
            f"{query!r} answered {got!r}, expected {expected!r} within {timeout_s} s; log: {(self.sock / 'pg.log').read_text()[-2000:]}"
        )

    def stop(self) -> None:
        run_as(
            self.user,
            [str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"],
            check=False,
        )


def datadir_in(scratch_dir: Path, repo: BarmanRepo) -> Path:
    datadir = scratch_dir / "data"
    datadir.mkdir(mode=0o700)
    if repo.user is not None:
        pw = pwd.getpwnam(repo.user)
        os.chown(datadir, pw.pw_uid, pw.pw_gid)
    return datadir


# --- locate and the archive listing ---------------------------------------------------------
def test_locate_returns_the_newest_done_backup(barman_repo: BarmanRepo) -> None:
    source = source_of(barman_repo)
    assert isinstance(source, PhysicalSource)
    listed = json.loads(barman_repo.barman("-f", "json", "list-backups", barman_repo.server).stdout)[
        barman_repo.server
    ]
    ids = sorted(entry["backup_id"] for entry in listed)
    assert len(ids) == 2

    backup = source.locate()

    assert backup.label == ids[-1]
    assert backup.pg_major == 15
    assert backup.timeline == 1
    assert backup.start_wal <= backup.stop_wal
    assert backup.start_time <= backup.stop_time < barman_repo.row_before_at
    assert backup.wal_segment_size == 16 * 1024 * 1024
    assert backup.size_bytes and backup.size_bytes > 1_000_000


def test_list_archived_wal_is_what_barman_holds_sorted_and_incremental(barman_repo: BarmanRepo) -> None:
    source = source_of(barman_repo)
    backup = source.locate()
    held = sorted(p.name for p in barman_repo.wals_dir().glob("*/*") if len(p.name) == 24)

    listed = list(source.list_archived_wal(backup, None))

    assert listed == [name for name in held if name >= backup.start_wal]
    assert len(listed) >= 4  # the backup's own segment, then one per step of the fixture
    assert list(source.list_archived_wal(backup, listed[1])) == listed[2:]
    assert list(source.list_archived_wal(backup, listed[-1])) == []


def test_a_segment_deleted_from_the_wals_directory_is_a_gap_in_the_listing(
    barman_repo: BarmanRepo, scratch_dir: Path
) -> None:
    clone = barman_repo.clone(scratch_dir / "repo")
    source = source_of(clone)
    backup = source.locate()
    before = list(source.list_archived_wal(backup, None))
    missing = before[2]
    next(clone.wals_dir().glob(f"*/{missing}")).unlink()

    after = list(source.list_archived_wal(backup, None))

    assert missing not in after
    assert after == [name for name in before if name != missing]
    # the segment after the gap is still there: contiguity, not the archive's end, must catch it
    assert before[3] in after


def test_needed_range_runs_from_the_backup_to_the_archive_end_unless_an_lsn_names_it(
    barman_repo: BarmanRepo,
) -> None:
    source = source_of(barman_repo)
    backup = source.locate()

    ranges = [
        source.wal_segments_needed(backup, t)
        for t in (TargetTime(barman_repo.between_at), Latest(), TargetName(barman_repo.restore_point))
    ]
    lsn = source.wal_segments_needed(backup, TargetLsn("0/9000060"))

    # the first commit after a time or restore point may be in any later segment: the whole archive is needed
    assert all(r.first == backup.start_wal and r.last is None and r.timeline == 1 for r in ranges)
    assert lsn.first == backup.start_wal and lsn.last == max("000000010000000000000009", backup.stop_wal)


# --- restore (the real barman recover, then the recovered cluster started) -------------------
def test_time_target_between_two_rows_keeps_the_row_before_and_not_the_row_after(
    barman_repo: BarmanRepo, scratch_dir: Path
) -> None:
    source = source_of(barman_repo)
    backup = source.locate()
    datadir = datadir_in(scratch_dir, barman_repo)
    needed = source.wal_segments_needed(backup, TargetTime(barman_repo.between_at))

    info = source.restore(backup, TargetTime(barman_repo.between_at), datadir, env={}, timeout_s=300)

    assert info.datadir == datadir and info.seconds > 0
    assert info.recovery_conf_written["restore_command"] == LOCAL_RESTORE_COMMAND
    assert info.recovery_conf_written["recovery_target_action"] == "pause"
    assert (
        "recovery_end_command" not in (datadir / "postgresql.auto.conf").read_text()
    )  # no command hook in scratch
    assert "recovery_target_time" in info.recovery_conf_written
    copied = sorted(p.name for p in (datadir / "barman_wal").iterdir() if len(p.name) == 24)
    assert copied == list(
        source.list_archived_wal(backup, None)
    )  # recovery gets the whole archive the check verified
    assert needed.last is None
    assert (datadir / "PG_VERSION").read_text().strip() == "15"
    owner = datadir.stat().st_uid
    assert all(p.stat().st_uid == owner for p in datadir.rglob("*"))
    cluster = Restored(datadir, barman_repo.user)
    cluster.start()
    try:
        cluster.wait_until("SELECT pg_get_wal_replay_pause_state()", "paused")
        assert cluster.sql("SHOW archive_mode") == "off"
        assert (
            cluster.sql("SELECT string_agg(label, ',' ORDER BY id) FROM drill_rows")
            == "in_backup,before_target,between_backups"
        )
        replayed = cluster.sql(
            f"SELECT pg_last_xact_replay_timestamp() < '{barman_repo.row_after_at.isoformat()}'"
        )
        assert replayed == "t"
        cluster.sql("SELECT pg_promote()")
        cluster.wait_until("SELECT pg_is_in_recovery()", "f")
    finally:
        cluster.stop()


def test_latest_recovers_every_archived_row(barman_repo: BarmanRepo, scratch_dir: Path) -> None:
    source = source_of(barman_repo)
    backup = source.locate()
    datadir = datadir_in(scratch_dir, barman_repo)

    info = source.restore(backup, Latest(), datadir, env={}, timeout_s=300)

    assert not any(key.startswith("recovery_target") for key in info.recovery_conf_written)
    cluster = Restored(datadir, barman_repo.user)
    cluster.start()
    try:
        cluster.wait_until("SELECT pg_is_in_recovery()", "f")
        assert cluster.sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM drill_rows") == "0,1,2,3,10"
    finally:
        cluster.stop()


def test_get_wal_in_the_config_still_recovers_with_a_local_restore_command(
    barman_repo: BarmanRepo, scratch_dir: Path
) -> None:
    clone = barman_repo.clone(scratch_dir / "repo")
    clone.config.write_text(clone.config.read_text() + "recovery_options = get-wal\n")
    source = source_of(clone)
    datadir = datadir_in(scratch_dir, clone)

    info = source.restore(source.locate(), Latest(), datadir, env={}, timeout_s=300)

    assert info.recovery_conf_written["restore_command"] == LOCAL_RESTORE_COMMAND


def test_a_time_target_before_the_backup_is_refused_before_recover_runs(
    barman_repo: BarmanRepo, scratch_dir: Path
) -> None:
    source = source_of(barman_repo)
    backup = source.locate()
    datadir = datadir_in(scratch_dir, barman_repo)

    with pytest.raises(PhysicalSourceError) as caught:
        source.restore(
            backup, TargetTime(backup.stop_time - timedelta(hours=1)), datadir, env={}, timeout_s=60
        )

    assert caught.value.code == "PITR_TARGET_BEFORE_BACKUP"
    assert backup.label in caught.value.message
    assert list(datadir.iterdir()) == []


def test_unknown_server_is_a_clear_error_not_a_traceback(barman_repo: BarmanRepo) -> None:
    source = Barman(server="no_such_server", config=str(barman_repo.config), os_user=barman_repo.user)

    with pytest.raises(PhysicalSourceError) as caught:
        source.locate()

    assert caught.value.code == "BACKUP_MISSING"
    assert "no_such_server" in caught.value.message and "Unknown server" in caught.value.message
