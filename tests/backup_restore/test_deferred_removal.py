"""A stopped scratch cluster's directory removed after the drill reports (``close(remove_now=False)``).

The physical drill stops its cluster before it returns and leaves the unlinks of its thousand files to a
thread of its own. What must hold: the directory always goes (also when the process exits at once), the
lock is held until it has gone (a concurrent reaper never touches it), and a removal cut short by a dead
process is finished by the reaper without being reported as a killed drill's cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from drillbook.drills.backup_restore import ephemeral_reap
from drillbook.drills.backup_restore.ephemeral import EphemeralCluster
from drillbook.drills.backup_restore.ephemeral_reap import PREFIX, REMOVING_PREFIX, hold_lock
from drillbook.drills.backup_restore.tree_removal import wait_pending

REPO = Path(__file__).resolve().parents[2]


def _stopped_cluster(tmp: Path, files: int = 300) -> EphemeralCluster:
    """A cluster object whose server is not running, its directory as ``prepare`` makes it, with data files."""
    root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=tmp))
    cluster = EphemeralCluster(min_major=None)
    cluster.root = root
    cluster._lock_fd = hold_lock(root)
    for d in range(3):
        sub = root / "data" / "base" / str(d)
        sub.mkdir(parents=True)
        for f in range(files // 3):
            (sub / str(f)).write_bytes(b"\0" * 8192)
    return cluster


def test_close_renames_at_once_and_the_tree_goes_in_the_background(tmp_path: Path) -> None:
    cluster = _stopped_cluster(tmp_path)
    root = cluster.root
    assert root is not None
    cluster.close(remove_now=False)
    assert cluster.root is None and not root.exists()  # renamed before close returned
    assert wait_pending(60)
    assert list(tmp_path.iterdir()) == []  # nothing left: neither the cluster nor its removing- name


def test_a_reaper_never_takes_a_directory_whose_removal_is_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from drillbook.drills.backup_restore import tree_removal

    seen: list[list[Path]] = []
    real = tree_removal.remove_tree

    def slow_then_look(path, **kw):  # type: ignore[no-untyped-def]
        if not seen:  # first call (the data directory): a reaper looks while the removal runs
            seen.append(ephemeral_reap.leftovers({os.geteuid()}, str(tmp_path)))
        real(path, **kw)

    monkeypatch.setattr(tree_removal, "remove_tree", slow_then_look)
    cluster = _stopped_cluster(tmp_path, files=30)
    cluster.close(remove_now=False)
    assert wait_pending(60)
    assert seen == [[]]  # the lock is held until the tree is gone
    assert list(tmp_path.iterdir()) == []


def test_a_removal_cut_short_is_finished_by_the_reaper_and_not_reported(tmp_path: Path) -> None:
    # what a remover killed mid-way leaves: the renamed directory, its lock file unlocked, some data
    left = tmp_path / (REMOVING_PREFIX + "abc123")
    (left / "data" / "base").mkdir(parents=True)
    (left / "data" / "base" / "1").write_bytes(b"\0" * 8192)
    os.close(hold_lock(left))  # created locked, then the holder "died"
    killed = Path(tempfile.mkdtemp(prefix=PREFIX, dir=tmp_path))  # a killed drill's cluster: still reported
    os.close(hold_lock(killed))
    removed = ephemeral_reap.reap({os.geteuid()}, str(tmp_path))
    assert removed == [str(killed)]
    assert list(tmp_path.iterdir()) == []


def test_the_tree_goes_even_when_the_process_exits_right_after_close(tmp_path: Path) -> None:
    """At interpreter exit no new thread pool may start: the removal finishes one file at a time instead."""
    code = (
        "import sys; from pathlib import Path; sys.path[:0] = [sys.argv[1], sys.argv[2]];\n"
        "from tests.backup_restore.test_deferred_removal import _stopped_cluster\n"
        "_stopped_cluster(Path(sys.argv[3]), files=600).close(remove_now=False)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "plugins"), str(REPO), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []
