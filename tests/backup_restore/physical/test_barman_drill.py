"""Barman drills end to end through the physical drill (run_physical) against the real Barman server of barman_fixture.

latest PASS; a time target between two known rows passes the before/after proof and the
reversed proof fails; a segment deleted from Barman's ``wals`` directory is WAL_GAP naming
it. No cluster is left behind.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from drillbook.drills.backup_restore.catalogue import BackupRestoreDrill
from drillbook.drills.backup_restore.ephemeral_reap import PREFIX, REMOVING_PREFIX
from drillbook.drills.backup_restore.physical.drill import run_physical
from drillbook.drills.backup_restore.tree_removal import wait_pending
from tests.backup_restore.physical import barman_fixture
from tests.backup_restore.physical.barman_fixture import BarmanRepo

barman_repo = barman_fixture.barman_repo  # the session fixture, in its own module
# clusters() lists tempfile's directory: a private one per test (conftest), so clusters of tests running at
# the same time elsewhere on the machine are not this test's leftovers
pytestmark = pytest.mark.usefixtures("private_tmp")


def barman_drill(repo: BarmanRepo, **backup: Any) -> BackupRestoreDrill:
    spec = {
        "server": repo.server,
        "config": str(repo.config),
        **({"os_user": repo.user} if repo.user else {}),
    }
    return BackupRestoreDrill.model_validate(
        {
            "name": "barman_pitr_test",
            "kind": "backup_restore",
            "schedule": "@daily",
            "controls": ["SOC2:A1.2"],
            "backup": {"barman": spec, **backup},
            "scratch": {"connection": "drillbook_scratch"},
            "objectives": {"rto": "15m", "rpo": "26h"},
            "restore": {"timeout": "5m"},
            "verify": {"min_rows": {"public.drill_rows": 1}},
        }
    )


def clusters() -> set[str]:
    """Cluster directories, once every background removal of a teardown has finished."""
    assert wait_pending(120), "a teardown's background removal did not finish within 120 s"
    tmp = Path(tempfile.gettempdir())
    return {str(p) for p in [*tmp.glob(PREFIX + "*"), *tmp.glob(REMOVING_PREFIX + "*")]}


def findings(result: Any) -> list[tuple[str, str]]:
    return [(f.code, f.message) for f in result.findings]


def test_latest_passes_through_the_drill(barman_repo: BarmanRepo, tmp_path: Path) -> None:
    before = clusters()

    result = run_physical(drill=barman_drill(barman_repo), state_dir=tmp_path / "state")

    assert result.verdict.value == "PASS", findings(result)
    names = [p.name for p in result.phases]
    for phase in ("locate", "archive", "restore", "safety", "recover", "measure", "teardown"):
        assert phase in names
    assert result.details["backup_set"]["tool"] == "barman"
    replayed = result.measurements.values["last_replayed_commit"]
    assert replayed is not None and replayed >= barman_repo.row_after_at.isoformat()[:19]
    assert result.measurements.counts["wal_segments_checked"] >= 4
    assert clusters() - before == set()


def test_time_target_between_two_rows_passes_the_before_after_proof(
    barman_repo: BarmanRepo, tmp_path: Path
) -> None:
    proof = {
        "must_exist": "select 1 from drill_rows where id = 1",
        "must_not_exist": "select 1 from drill_rows where id = 2",
    }
    target = {"time": barman_repo.between_at.isoformat()}

    result = run_physical(
        drill=barman_drill(barman_repo, target=target, pitr_proof=proof), state_dir=tmp_path / "state"
    )

    assert result.verdict.value == "PASS", findings(result)
    assert "pitr_proof" in [p.name for p in result.phases]
    replayed = result.measurements.values["last_replayed_commit"]
    assert replayed is not None and replayed < barman_repo.row_after_at.isoformat()


def test_the_reversed_proof_fails_so_the_proof_can_fail(barman_repo: BarmanRepo, tmp_path: Path) -> None:
    proof = {
        "must_exist": "select 1 from drill_rows where id = 2",
        "must_not_exist": "select 1 from drill_rows where id = 1",
    }
    target = {"time": barman_repo.between_at.isoformat()}

    result = run_physical(
        drill=barman_drill(barman_repo, target=target, pitr_proof=proof), state_dir=tmp_path / "state"
    )

    assert result.verdict.value == "FAIL", findings(result)
    assert "PITR_PROOF_FAILED" in {code for code, _ in findings(result)}


def test_a_segment_deleted_from_barmans_wals_directory_is_wal_gap(
    barman_repo: BarmanRepo, tmp_path: Path
) -> None:
    root = Path(tempfile.mkdtemp(prefix="drillbook_barman_gap_"))
    try:
        root.chmod(0o755)
        clone = barman_repo.clone(root / "repo")
        held = sorted(p for p in clone.wals_dir().glob("*/*") if len(p.name) == 24)
        missing = held[-2]  # segments before and after it stay
        missing.unlink()

        result = run_physical(drill=barman_drill(clone), state_dir=tmp_path / "state")

        assert result.verdict.value == "FAIL", findings(result)
        gap = [message for code, message in findings(result) if code == "WAL_GAP"]
        assert gap and missing.name in gap[0], findings(result)
        assert "restore" not in [p.name for p in result.phases]  # nothing was restored past a known gap
    finally:
        shutil.rmtree(root, ignore_errors=True)
