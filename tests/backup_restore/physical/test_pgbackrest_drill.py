"""pgBackRest drills against a real PG15 source archiving into a real posix repository (no mocks).

Each test builds its own source (conftest.pg_source): full backup, rows at known
times, WAL switched into the archive; then the drill restores into a private
cluster and must turn green or red with the named code.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from drillbook.drills.backup_restore.catalogue import BackupRestoreDrill
from drillbook.drills.backup_restore.ephemeral_reap import PREFIX, REMOVING_PREFIX
from drillbook.drills.backup_restore.physical.drill import run_physical
from drillbook.drills.backup_restore.physical.pgbackrest import PgBackRest
from drillbook.drills.backup_restore.tree_removal import wait_pending

from .conftest import STANZA, SourceCluster


def physical_drill(src: SourceCluster, *, config: Path | None = None, **backup: Any) -> BackupRestoreDrill:
    """A pgBackRest drill of ``src`` (its own pgBackRest config unless ``config`` is given)."""
    return BackupRestoreDrill.model_validate(
        {
            "name": "pitr_test",
            "kind": "backup_restore",
            "schedule": "@daily",
            "controls": ["SOC2:A1.2"],
            "backup": {"pgbackrest": {"stanza": STANZA, "config": str(config or src.config)}, **backup},
            "scratch": {"connection": "drillbook_scratch"},
            "objectives": {"rto": "15m", "rpo": "26h"},
            "restore": {"timeout": "5m"},
            "verify": {"min_rows": {"public.pitr_marker": 1}},
        }
    )


pytestmark = pytest.mark.usefixtures(
    "private_tmp"
)  # conftest: this module's clusters in a directory of its own


def codes(result) -> set[str]:
    return {f.code for f in result.findings}


def writable_outside(parent: Path, name: str) -> Path:
    """A directory outside the scratch cluster that its OS user could write: only the drill's checks keep it empty."""
    outside = parent / name
    outside.mkdir()
    outside.chmod(0o777)
    return outside


def leftover_clusters(before: set[str]) -> set[str]:
    """Cluster directories not in ``before``, once every background removal of a teardown has finished."""
    import tempfile

    assert wait_pending(120), "a teardown's background removal did not finish within 120 s"
    tmp = Path(tempfile.gettempdir())
    return {str(p) for p in [*tmp.glob(PREFIX + "*"), *tmp.glob(REMOVING_PREFIX + "*")]} - before


def _snapshot() -> set[str]:
    return leftover_clusters(set())


@pytest.fixture
def backed_up(pg_source: SourceCluster) -> SourceCluster:
    pg_source.insert_marker("before_backup")
    pg_source.full_backup()
    pg_source.insert_marker("row1")
    time.sleep(1.1)
    pg_source.insert_marker("row2")
    pg_source.switch_wal()
    return pg_source


def test_latest_passes_and_measures_rpo_from_replayed_commit(
    backed_up: SourceCluster, tmp_path: Path
) -> None:
    before = _snapshot()
    result = run_physical(drill=physical_drill(backed_up), state_dir=tmp_path / "state")
    assert result.verdict.value == "PASS", [(f.code, f.message) for f in result.findings]
    names = [p.name for p in result.phases]
    for phase in (
        "locate",
        "archive",
        "restore",
        "safety",
        "recover",
        "verify.databases",
        "measure",
        "teardown",
    ):
        assert phase in names
    replayed = result.measurements.values["last_replayed_commit"]
    assert replayed is not None and replayed >= backed_up.markers["row2"].isoformat()[:19]
    assert "vs drill start" in result.measurements.values["rpo_source"]
    assert result.measurements.rpo_seconds is not None and result.measurements.rto_seconds is not None
    # the tool's own postgresql.auto.conf is plain: read in-process, no postgres -C per setting (conf_scan.py)
    assert result.details["scratch_settings_read_by"].startswith("in-process scan")
    assert result.details["scratch_running"]["settings"]["archive_mode"] == "off"
    # the restore_command pgBackRest wrote was checked and is what the server ran with (pinned, pgbackrest.py)
    pinned = result.details["scratch_running"]["restore_command"]
    assert pinned == result.details["recovery_settings"]["restore_command"]
    assert pinned.startswith("pgbackrest ") and pinned.endswith(' archive-get %f "%p"')
    assert f"--stanza={STANZA}" in pinned
    assert leftover_clusters(before) == set()
    # the second run checks only the segments archived since (remembered state)
    backed_up.insert_marker("row3")
    backed_up.switch_wal()
    again = run_physical(drill=physical_drill(backed_up), state_dir=tmp_path / "state")
    assert again.verdict.value == "PASS", [(f.code, f.message) for f in again.findings]
    assert again.details["wal_archive"]["resumed_after"] is not None
    assert (
        again.measurements.counts["wal_segments_checked"]
        < result.measurements.counts["wal_segments_checked"] + 2
    )


def test_time_target_between_two_rows_passes_the_before_after_proof(
    backed_up: SourceCluster, tmp_path: Path
) -> None:
    row1, row2 = backed_up.markers["row1"], backed_up.markers["row2"]
    target = row1 + (row2 - row1) / 2
    drill = physical_drill(
        backed_up,
        target={"time": target.isoformat()},
        pitr_proof={
            "must_exist": "select 1 from public.pitr_marker where name = 'row1'",
            "must_not_exist": "select 1 from public.pitr_marker where name = 'row2'",
        },
    )
    result = run_physical(drill=drill, state_dir=tmp_path)
    assert result.verdict.value == "PASS", [(f.code, f.message) for f in result.findings]
    assert result.details["pitr_proof"] == {"must_exist": 1, "must_not_exist": 0}
    assert "vs target time" in result.measurements.values["rpo_source"]
    assert (
        result.measurements.rpo_seconds is not None
        and result.measurements.rpo_seconds <= (target - row1).total_seconds() + 0.01
    )
    # the same proof turned the other way round must turn red: the proof can fail
    wrong = physical_drill(
        backed_up,
        target={"time": target.isoformat()},
        pitr_proof={"must_exist": "select 1 from public.pitr_marker where name = 'row2'"},
    )
    red = run_physical(drill=wrong, state_dir=tmp_path)
    assert red.verdict.value == "FAIL" and "PITR_PROOF_FAILED" in codes(red)


def test_target_after_the_last_archived_wal_is_unreached(backed_up: SourceCluster, tmp_path: Path) -> None:
    before = _snapshot()
    target = backed_up.markers["row2"] + timedelta(minutes=10)
    result = run_physical(
        drill=physical_drill(backed_up, target={"time": target.isoformat()}), state_dir=tmp_path
    )
    assert result.verdict.value == "FAIL", [(f.code, f.message) for f in result.findings]
    assert "PITR_TARGET_UNREACHED" in codes(result)
    assert leftover_clusters(before) == set()


def test_target_before_the_backup_is_refused(backed_up: SourceCluster, tmp_path: Path) -> None:
    target = backed_up.markers["before_backup"]
    result = run_physical(
        drill=physical_drill(backed_up, target={"time": target.isoformat()}), state_dir=tmp_path
    )
    assert "PITR_TARGET_BEFORE_BACKUP" in codes(result) and result.verdict.value == "FAIL"
    assert "restore" not in [p.name for p in result.phases]


def test_one_deleted_wal_segment_is_a_wal_gap_naming_it(backed_up: SourceCluster, tmp_path: Path) -> None:
    backed_up.insert_marker("row3")
    backed_up.switch_wal()
    segments = backed_up.archived_segments()

    victim = segments[2]  # 1 and 2 hold the backup; 3 holds row1/row2
    victim.unlink()
    result = run_physical(drill=physical_drill(backed_up), state_dir=tmp_path)
    assert result.verdict.value == "FAIL", [(f.code, f.message) for f in result.findings]
    gap = next(f for f in result.findings if f.code == "WAL_GAP")
    assert victim.name[:24] in gap.message
    assert "restore" not in [p.name for p in result.phases]


def test_corrupted_data_file_in_the_repository_is_backup_corrupt(
    backed_up: SourceCluster, tmp_path: Path
) -> None:
    before = _snapshot()
    label_dir = next(p for p in (backed_up.repo / "backup" / STANZA).iterdir() if p.name.endswith("F"))
    files = sorted(
        (label_dir / "pg_data" / "base").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0
    )
    victim = files[-1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    result = run_physical(drill=physical_drill(backed_up), state_dir=tmp_path)
    assert result.verdict.value == "FAIL", [(f.code, f.message) for f in result.findings]
    assert "BACKUP_CORRUPT" in codes(result)
    assert leftover_clusters(before) == set()


class _CraftedAutoConf(PgBackRest):
    """The real pgBackRest restore, then a postgresql.auto.conf that turns archiving back on into the source's repo.

    A backup whose ALTER SYSTEM settings survive the tool's restore (or a tampered repository)
    looks exactly like this; the drill must refuse to start it.
    """

    def restore(self, backup, target, datadir, *, env, timeout_s):  # type: ignore[no-untyped-def]
        info = super().restore(backup, target, datadir, env=env, timeout_s=timeout_s)
        with open(datadir / "postgresql.auto.conf", "a") as fh:
            fh.write(
                f"archive_mode = 'on'\narchive_command = 'pgbackrest --config={self.config} --stanza={self.stanza} "
                "archive-push %p'\n"
            )
        return info


def test_crafted_auto_conf_with_archive_mode_on_is_refused_before_start(
    backed_up: SourceCluster, tmp_path: Path
) -> None:
    before = _snapshot()
    archived = [p.name for p in backed_up.archived_segments()]
    drill = physical_drill(backed_up)
    source = _CraftedAutoConf(stanza=STANZA, config=str(backed_up.config))
    result = run_physical(drill=drill, source=source, state_dir=tmp_path)
    assert result.verdict.value == "ERROR", [(f.code, f.message) for f in result.findings]
    unsafe = next(f for f in result.findings if f.code == "SCRATCH_UNSAFE")
    assert "archive_mode='on'" in unsafe.message and "refused before start" in unsafe.message
    assert "recover" not in [p.name for p in result.phases]  # never started
    time.sleep(1)
    assert [
        p.name for p in backed_up.archived_segments()
    ] == archived  # nothing was pushed into the repository
    assert leftover_clusters(before) == set()


def test_a_pre_start_scan_that_is_fooled_still_archives_nothing_and_is_stopped_after_start(
    backed_up: SourceCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """conf_scan.py may read a file differently from PostgreSQL (a parser divergence): here it is made to miss the
    crafted archive_mode/archive_command lines. The server then starts, but with the safe values forced on its
    command line, and PostgreSQL's own parse (pg_file_settings) stops it before anything else."""
    from drillbook.drills.backup_restore.physical import conf_scan

    real = conf_scan.scan_file

    def fooled(path: Path) -> list[tuple[str, str]] | None:
        lines = real(path)
        if lines is None or path.name != "postgresql.auto.conf":
            return lines
        return [(k, v) for k, v in lines if k not in ("archive_mode", "archive_command")]

    monkeypatch.setattr(conf_scan, "scan_file", fooled)
    before = _snapshot()
    archived = [p.name for p in backed_up.archived_segments()]
    source = _CraftedAutoConf(stanza=STANZA, config=str(backed_up.config))
    result = run_physical(drill=physical_drill(backed_up), source=source, state_dir=tmp_path)
    assert result.verdict.value == "ERROR", [(f.code, f.message) for f in result.findings]
    unsafe = next(f for f in result.findings if f.code == "SCRATCH_UNSAFE")
    assert "archive_mode='on' (read 'off' before start)" in unsafe.message, unsafe.message
    recover = next(p for p in result.phases if p.name == "recover")
    assert recover.status == "failed" and "refused after start" in recover.detail
    assert "verify.databases" not in [p.name for p in result.phases]
    time.sleep(1)
    assert [p.name for p in backed_up.archived_segments()] == archived  # the forced archive_mode=off held
    assert leftover_clusters(before) == set()


_KILLED_DRILL = """
import sys
sys.path.insert(0, sys.argv[2])
from drillbook.drills.backup_restore.catalogue import BackupRestoreDrill
from drillbook.drills.backup_restore.physical.drill import run_physical
drill = BackupRestoreDrill.model_validate_json(sys.argv[1])
run_physical(drill=drill, on_phase=lambda p: print(p.name, flush=True))
"""


def test_a_killed_drill_leaves_a_cluster_the_reaper_removes(
    backed_up: SourceCluster, private_tmp: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys

    from drillbook.drills.backup_restore.ephemeral import reap_left_clusters

    before = _snapshot()
    drill = physical_drill(backed_up)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILLED_DRILL,
            drill.model_dump_json(),
            str(Path(__file__).parents[3] / "plugins"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(private_tmp)},
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # "safety" is printed when it ends: the server starts next
        if line.strip() == "safety":
            break
    deadline = time.monotonic() + 60
    left: set[str] = set()
    while time.monotonic() < deadline:
        left = {d for d in leftover_clusters(before) if (Path(d) / "data" / "postmaster.pid").exists()}
        if left:
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert left, "the drill was killed before its cluster started"
    removed = reap_left_clusters()
    assert left <= set(removed)
    assert not any(Path(d).exists() for d in left)


class _DamagedHeapPage(PgBackRest):
    """The real restore, then one flipped byte in a table page that no WAL after the backup rewrites.

    Damage the repository's checksums cannot see (the page was already bad when the backup read it,
    or the copy broke after the checksum): only a heap check of the recovered cluster finds it.
    """

    relpath = ""

    def restore(self, backup, target, datadir, *, env, timeout_s):  # type: ignore[no-untyped-def]
        info = super().restore(backup, target, datadir, env=env, timeout_s=timeout_s)
        page = datadir / self.relpath
        data = bytearray(page.read_bytes())
        data[8192 - 64] ^= 0xFF  # inside the last tuple of the first page
        page.write_bytes(bytes(data))
        return info


def test_a_damaged_heap_page_is_heap_corrupt(pg_source: SourceCluster, tmp_path: Path) -> None:
    pg_source.sql(
        "create table public.static_data as select g as id, md5(g::text) as v from generate_series(1, 50) g"
    )
    pg_source.insert_marker("row1")
    pg_source.sql("checkpoint")
    pg_source.full_backup()
    pg_source.switch_wal()
    source = _DamagedHeapPage(stanza=STANZA, config=str(pg_source.config))
    source.relpath = pg_source.sql("select pg_relation_filepath('public.static_data')")
    result = run_physical(drill=physical_drill(pg_source), source=source, state_dir=tmp_path)
    assert result.verdict.value == "FAIL", [(f.code, f.message) for f in result.findings]
    heap = [f for f in result.findings if f.code == "HEAP_CORRUPT"]
    assert heap and heap[0].subject == "postgres.static_data"
    # the row count and B-tree checks started alongside the heap check read the damaged page too: their
    # errors are dropped with the ladder, never reported as a crash, and the cluster is still torn down
    assert "DRILL_CRASHED" not in codes(result)
    assert not any(p.name == "verify.volume" for p in result.phases)
    assert result.phases[-1].name == "teardown" and leftover_clusters(set()) == set()


def test_a_concurrent_read_that_raises_is_an_error_in_its_rung_and_teardown_still_runs(
    backed_up: SourceCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row count runs on its own connection while the heap check runs (verify/prefetch.py): its failure is
    DRILL_CRASHED in verify.volume, the drill is never PASS, and the cluster is stopped and removed."""
    import threading

    from drillbook.drills.backup_restore.verify import volume

    def broken(conn, only=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("count failed on its own connection")

    monkeypatch.setattr(volume, "count_rows", broken)
    result = run_physical(drill=physical_drill(backed_up), state_dir=tmp_path / "state")
    assert result.verdict.value == "ERROR", [(f.code, f.message) for f in result.findings]
    crashed = [f for f in result.findings if f.code == "DRILL_CRASHED"]
    assert crashed and crashed[0].subject == "verify.volume"
    names = [p.name for p in result.phases]
    assert "verify.heap" in names and "verify.integrity" not in names and names[-1] == "teardown"
    assert leftover_clusters(set()) == set()
    assert not [t for t in threading.enumerate() if t.name.startswith("drillbook-verify")]


class _CraftedHooks(PgBackRest):
    """The real restore, then a postgresql.auto.conf (what a tampered repository hands back) with settings that
    run a command or write outside the scratch directory: ssl with a passphrase command on an encrypted key, an
    external pid file, a logging collector writing elsewhere, a preload library.

    None of them archives or replicates, so the archive/replication check does not see them; the drill's own
    configuration turns them off, but postgresql.auto.conf is read after it and wins.
    """

    outside = Path("/nonexistent")

    def restore(self, backup, target, datadir, *, env, timeout_s):  # type: ignore[no-untyped-def]
        import subprocess

        info = super().restore(backup, target, datadir, env=env, timeout_s=timeout_s)
        key, cert = datadir / "evil.key", datadir / "evil.crt"
        subprocess.run(
            ["openssl", "genrsa", "-aes256", "-passout", "pass:drillbook", "-out", str(key), "2048"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                "openssl",
                "req",
                "-new",
                "-x509",
                "-key",
                str(key),
                "-passin",
                "pass:drillbook",
                "-subj",
                "/CN=x",
                "-days",
                "1",
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
        st = datadir.stat()
        for p in (key, cert):
            os.chown(p, st.st_uid, st.st_gid)
            p.chmod(0o600)
        with open(datadir / "postgresql.auto.conf", "a") as fh:
            fh.write(
                f"ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n"
                f"ssl_passphrase_command = 'touch {self.outside}/command_ran; echo drillbook'\n"
                f"external_pid_file = '{self.outside}/production.pid'\n"
                f"logging_collector = on\nlog_directory = '{self.outside}/log'\n"
                "shared_preload_libraries = 'auto_explain'\n"
            )
        return info


def test_crafted_auto_conf_cannot_run_a_command_or_write_outside_the_scratch_dir(
    backed_up: SourceCluster, private_tmp: Path, tmp_path: Path
) -> None:
    before = _snapshot()
    outside = writable_outside(private_tmp, "outside")
    source = _CraftedHooks(stanza=STANZA, config=str(backed_up.config))
    source.outside = outside
    result = run_physical(drill=physical_drill(backed_up), source=source, state_dir=tmp_path)
    assert sorted(p.name for p in outside.iterdir()) == [], [(f.code, f.message) for f in result.findings]
    assert result.verdict.value == "PASS", [(f.code, f.message) for f in result.findings]
    settings = result.details["scratch_running"]["settings"]
    assert settings["ssl"] == "off" and settings["shared_preload_libraries"] == ""
    assert leftover_clusters(before) == set()


def test_a_restore_command_set_by_the_pgbackrest_config_is_refused_before_it_runs(
    backed_up: SourceCluster, private_tmp: Path, tmp_path: Path
) -> None:
    """pgBackRest writes whatever ``recovery-option=restore_command=...`` says: the server would run it per segment."""
    before = _snapshot()
    pwned = writable_outside(private_tmp, "outside-rc") / "pwned"
    with open(backed_up.config, "a") as conf:
        conf.write(f'recovery-option=restore_command=touch {pwned}; pgbackrest archive-get %f "%p"\n')
    result = run_physical(drill=physical_drill(backed_up), state_dir=tmp_path)
    assert result.verdict.value == "ERROR", [(f.code, f.message) for f in result.findings]
    unsafe = next(f for f in result.findings if f.code == "SCRATCH_UNSAFE")
    assert "restore_command" in unsafe.message and "refused before start" in unsafe.message
    assert "';'" in unsafe.message  # names what a shell would act on
    names = [p.name for p in result.phases]
    assert "recover" not in names and "safety" not in names  # never started
    assert not pwned.exists()
    assert leftover_clusters(before) == set()


def test_a_config_path_with_a_space_is_quoted_by_pgbackrest_and_accepted(
    backed_up: SourceCluster, private_tmp: Path, tmp_path: Path
) -> None:
    """pgBackRest double-quotes an option value with a space in the restore_command it writes: not a refusal."""
    spaced = private_tmp / "pg backrest"
    spaced.mkdir()
    config = spaced / "pgbackrest.conf"
    config.write_text(backed_up.config.read_text())
    owner = backed_up.config.stat()
    os.chown(spaced, owner.st_uid, owner.st_gid)
    os.chown(config, owner.st_uid, owner.st_gid)
    result = run_physical(drill=physical_drill(backed_up, config=config), state_dir=tmp_path)
    assert result.verdict.value == "PASS", [(f.code, f.message) for f in result.findings]
    assert f'--config="{config}"' in result.details["scratch_running"]["restore_command"]


def test_a_segment_deleted_after_it_was_verified_is_still_a_wal_gap(
    backed_up: SourceCluster, tmp_path: Path
) -> None:
    """The remembered state skips listing what was verified; recovery still needs it. A segment lost since the
    last run makes recovery to ``latest`` end early (and lose every later row): that must not pass."""
    backed_up.insert_marker("row3")
    backed_up.switch_wal()
    first = run_physical(drill=physical_drill(backed_up), state_dir=tmp_path / "state")
    assert first.verdict.value == "PASS", [(f.code, f.message) for f in first.findings]
    segments = backed_up.archived_segments()
    victim = segments[2]  # verified by the first run; holds row1/row2
    victim.unlink()
    backed_up.insert_marker("row4")
    backed_up.switch_wal()
    again = run_physical(drill=physical_drill(backed_up), state_dir=tmp_path / "state")
    assert again.details["wal_archive"]["resumed_after"] is not None  # the memory was used
    assert again.verdict.value == "FAIL", [(f.code, f.message) for f in again.findings]
    gap = next(f for f in again.findings if f.code == "WAL_GAP")
    assert victim.name[:24] in gap.message


def test_heap_check_uses_amcheck_where_the_backup_installed_it(
    pg_source: SourceCluster, tmp_path: Path
) -> None:
    """Production often installs extensions in their own schema; amcheck there must be used (schema-qualified),
    not looked up by search_path: every table was HEAP_CORRUPT ("function verify_heapam does not exist"), and a
    ``public.verify_heapam`` the backup brings could answer for it."""
    pg_source.sql(
        "create schema ext_tools; create extension if not exists amcheck; alter extension amcheck set schema ext_tools"
    )
    pg_source.sql(
        "create function public.verify_heapam(regclass, on_error_stop boolean, check_toast boolean, "
        "out blkno bigint, out offnum integer, out msg text) returns setof record language sql "
        "as $$ select 0::bigint, 0, 'forged by the backup'::text $$"
    )
    pg_source.insert_marker("row1")
    pg_source.full_backup()
    pg_source.switch_wal()
    result = run_physical(drill=physical_drill(pg_source), state_dir=tmp_path)
    assert result.verdict.value == "PASS", [(f.code, f.message) for f in result.findings]
    assert result.measurements.counts["heap_tables_checked"] >= 1


def test_a_drill_killed_mid_restore_leaves_nothing_running_and_the_reaper_removes_its_directory(
    backed_up: SourceCluster, private_tmp: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys

    from drillbook.drills.backup_restore.ephemeral import reap_left_clusters

    before = _snapshot()
    drill = physical_drill(backed_up)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILLED_DRILL,
            drill.model_dump_json(),
            str(Path(__file__).parents[3] / "plugins"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(private_tmp)},
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # "archive" is printed when it ends: the restore runs next
        if line.strip() == "archive":
            break
    deadline = time.monotonic() + 60
    left: set[str] = set()
    while time.monotonic() < deadline:  # the restore has begun writing the data directory
        left = {
            d
            for d in leftover_clusters(before)
            if (Path(d) / "data").is_dir() and any((Path(d) / "data").iterdir())
        }
        if left:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert left, "the drill was killed before its restore wrote anything"
    time.sleep(1)
    restores = subprocess.run(
        ["pgrep", "-f", f"pg1-path={next(iter(left))}"], capture_output=True, text=True
    ).stdout
    assert restores.strip() == "", "pgbackrest restore outlived its drill"
    removed = reap_left_clusters()
    assert left <= set(removed)
    assert not any(Path(d).exists() for d in left)


def test_an_empty_repository_is_backup_missing_never_pass(pg_source: SourceCluster, tmp_path: Path) -> None:
    pg_source.pgbackrest("stanza-create")  # the stanza exists, no backup set was ever taken
    result = run_physical(drill=physical_drill(pg_source), state_dir=tmp_path)
    assert result.verdict.value != "PASS", [(f.code, f.message) for f in result.findings]
    missing = next(f for f in result.findings if f.code == "BACKUP_MISSING")
    assert STANZA in missing.message and "restore" not in [p.name for p in result.phases]


class _OtherMajor(PgBackRest):
    """The real restore of a PostgreSQL 15 backup, then a PG_VERSION of a major no binaries exist for."""

    def restore(self, backup, target, datadir, *, env, timeout_s):  # type: ignore[no-untyped-def]
        info = super().restore(backup, target, datadir, env=env, timeout_s=timeout_s)
        (datadir / "PG_VERSION").write_text("99\n")
        return info


def test_no_server_binaries_for_the_backups_major_is_a_clear_error_naming_it(
    backed_up: SourceCluster, tmp_path: Path
) -> None:
    before = _snapshot()
    source = _OtherMajor(stanza=STANZA, config=str(backed_up.config))
    result = run_physical(drill=physical_drill(backed_up), source=source, state_dir=tmp_path)
    assert result.verdict.value != "PASS", [(f.code, f.message) for f in result.findings]
    missing = next(f for f in result.findings if f.code == "SERVER_BINARIES_MISSING")
    assert "PostgreSQL 99" in missing.message and "postgresql-99" in missing.message
    assert "recover" not in [p.name for p in result.phases]
    assert leftover_clusters(before) == set()


_WHOLE_DRILL = """
import sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from drillbook.drills.backup_restore.catalogue import BackupRestoreDrill
from drillbook.drills.backup_restore.physical.drill import run_physical
drill = BackupRestoreDrill.model_validate_json(sys.argv[1])
result = run_physical(drill=drill, state_dir=Path(sys.argv[3]))
print("VERDICT", result.verdict.value, [(f.code, f.message[:200]) for f in result.findings], flush=True)
"""


def test_two_drills_of_the_same_stanza_at_once_both_pass_and_leave_nothing(
    backed_up: SourceCluster, private_tmp: Path, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    before = _snapshot()
    drill = physical_drill(backed_up)
    argv = [
        sys.executable,
        "-c",
        _WHOLE_DRILL,
        drill.model_dump_json(),
        str(Path(__file__).parents[3] / "plugins"),
        str(tmp_path / "state"),
    ]  # one state file, written by both
    procs = [
        subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TMPDIR": str(private_tmp)},
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=400) for p in procs]
    for out, err in outs:
        assert "VERDICT PASS" in out, (out, err[-2000:])
    assert leftover_clusters(before) == set()
    state = next((tmp_path / "state").glob("wal-verified-*.json"))
    assert "verified_through" in state.read_text()


class _FutureBackup(PgBackRest):
    """The real info, with the newest set's end moved a day ahead (a tampered backup.info or a backup host's
    clock): its age is negative, so it can never be older than the RPO objective."""

    def locate(self):  # type: ignore[no-untyped-def]
        from dataclasses import replace

        bk = super().locate()
        return replace(bk, stop_time=bk.stop_time + timedelta(days=1))


def test_a_backup_that_ends_in_the_future_is_not_fresh(backed_up: SourceCluster, tmp_path: Path) -> None:
    source = _FutureBackup(stanza=STANZA, config=str(backed_up.config))
    result = run_physical(drill=physical_drill(backed_up), source=source, state_dir=tmp_path)
    assert result.verdict.value != "PASS", [(f.code, f.message) for f in result.findings]
    stale = next(f for f in result.findings if f.code == "BACKUP_STALE")
    assert "in the future" in stale.message


class _StandbySignal(PgBackRest):
    """The real restore, then a ``standby.signal`` (a backup of a standby's directory, or a tampered one)."""

    def restore(self, backup, target, datadir, *, env, timeout_s):  # type: ignore[no-untyped-def]
        info = super().restore(backup, target, datadir, env=env, timeout_s=timeout_s)
        (datadir / "standby.signal").write_text("")
        return info


def test_a_standby_signal_in_the_restored_directory_is_refused_before_start(
    backed_up: SourceCluster, tmp_path: Path
) -> None:
    """A standby never ends recovery: the drill would wait the whole restore timeout (hours in production) and then
    blame recovery; it is named before start instead."""
    before = _snapshot()
    drill = physical_drill(backed_up).model_copy(
        update={"restore": physical_drill(backed_up).restore.model_copy(update={"timeout": 40})}
    )
    source = _StandbySignal(stanza=STANZA, config=str(backed_up.config))
    began = time.monotonic()
    result = run_physical(drill=drill, source=source, state_dir=tmp_path)
    assert result.verdict.value != "PASS", [(f.code, f.message) for f in result.findings]
    unsafe = next(f for f in result.findings if f.code == "SCRATCH_UNSAFE")
    assert "standby.signal" in unsafe.message
    assert "recover" not in [p.name for p in result.phases]
    assert time.monotonic() - began < 40
    assert leftover_clusters(before) == set()


class _SmuggledTarget(PgBackRest):
    """The real restore (``latest``: no target written), then an included file the backup brings that sets a
    recovery target and promotes there: recovery would stop early and the drill verify a past state."""

    stop_at = ""

    def restore(self, backup, target, datadir, *, env, timeout_s):  # type: ignore[no-untyped-def]
        info = super().restore(backup, target, datadir, env=env, timeout_s=timeout_s)
        (datadir / "smuggled.conf").write_text(
            f"recovery_target_time = '{self.stop_at}'\nrecovery_target_action = 'promote'\n"
        )
        with open(datadir / "postgresql.auto.conf", "a") as fh:
            fh.write("include_if_exists = 'smuggled.conf'\n")
        return info


def test_a_recovery_target_the_backup_brings_is_refused_before_start(
    backed_up: SourceCluster, tmp_path: Path
) -> None:
    before = _snapshot()
    row1, row2 = backed_up.markers["row1"], backed_up.markers["row2"]
    source = _SmuggledTarget(stanza=STANZA, config=str(backed_up.config))
    source.stop_at = (row1 + (row2 - row1) / 2).isoformat()
    result = run_physical(drill=physical_drill(backed_up), source=source, state_dir=tmp_path)
    assert result.verdict.value != "PASS", [(f.code, f.message) for f in result.findings]
    unsafe = next(f for f in result.findings if f.code == "SCRATCH_UNSAFE")
    assert "recovery_target_time" in unsafe.message and "refused before start" in unsafe.message
    assert "recover" not in [p.name for p in result.phases]
    assert leftover_clusters(before) == set()
