"""The ephemeral-cluster reaper runs from ``drillbook scratch reap`` and the Airflow reap task, not only at the next start.

Each test leaves a real cluster behind: a child process starts an
``EphemeralCluster`` and is SIGKILLed, so its postmaster keeps running with
nobody holding ``owner.lock``. Clusters live in a private temporary directory
(``TMPDIR`` for the child, ``tempfile.tempdir`` here), so concurrent tests
elsewhere neither see these clusters nor lose theirs to this reaper.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backup_restore.conftest import make_drill
from tests.backup_restore.test_isolation_attacks import _HOLDER, _alive, _postmaster_pid

PLUGINS = str(Path(__file__).resolve().parents[2] / "plugins")


@pytest.fixture
def private_tmp(monkeypatch, tmp_path_factory) -> Iterator[Path]:
    tmp_path_factory.getbasetemp()  # pytest's own temporary root is fixed before tempfile.tempdir is patched
    # short: the cluster's unix socket path must fit in 107 bytes
    tmp = Path(tempfile.mkdtemp(prefix="dbreap-", dir="/tmp"))
    os.chmod(tmp, 0o755)  # as root the cluster runs as an unprivileged user, which must reach its socket
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield tmp
    from drillbook.drills.backup_restore.ephemeral import reap_left_clusters

    reap_left_clusters(str(tmp))  # whatever a failed test left
    shutil.rmtree(tmp, ignore_errors=True)


def _leave_cluster(tmp: Path) -> tuple[Path, int]:
    """A cluster whose drill was SIGKILLed: (its directory, its still running postmaster's pid)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, PLUGINS],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    try:
        assert holder.stdout is not None
        root = Path(holder.stdout.readline().strip())
        assert root.parent == tmp, root
        pid = _postmaster_pid(root)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
    assert root.exists() and _alive(pid), "SIGKILL left the cluster running (what the reaper is for)"
    return root, pid


def _gone(root: Path, pid: int) -> bool:
    for _ in range(50):
        if not _alive(pid):
            break
        time.sleep(0.1)
    return not root.exists() and not _alive(pid)


def test_cli_scratch_reap_removes_a_killed_drills_cluster_and_leaves_a_live_one(private_tmp, capsys):
    from drillbook.cli import main
    from drillbook.drills.backup_restore.ephemeral import EphemeralCluster

    left, pid = _leave_cluster(private_tmp)
    live = EphemeralCluster(min_major=None)
    live.start()  # another drill's cluster, in use (its own start reaps too: kill the next one after it)
    try:
        assert str(left) in live.reaped  # the start-time reaper, as before
        left, pid = _leave_cluster(private_tmp)
        assert main(["scratch", "reap", "--ephemeral"]) == 0
        out = capsys.readouterr().out
        assert f"removed    {left}" in out and "1 ephemeral cluster(s) removed" in out
        assert _gone(left, pid), "the left-over cluster is still there"
        assert live.root is not None and live.root.exists() and _alive(_postmaster_pid(live.root))
        # healthy control: nothing left over, the live cluster is not touched
        assert main(["scratch", "reap", "--ephemeral"]) == 0
        out = capsys.readouterr().out
        assert "0 ephemeral cluster(s) removed" in out and str(live.root) not in out
        assert live.root.exists() and _alive(_postmaster_pid(live.root))
    finally:
        live.close()


def test_airflow_reap_task_removes_clusters_for_ephemeral_drills_only(private_tmp, tmp_path):
    from drillbook.drills.backup_restore.dag import reap_now

    left, pid = _leave_cluster(private_tmp)
    shared = reap_now(make_drill(str(tmp_path)))  # a shared-target drill has no clusters to reap
    assert shared["clusters"] == [] and left.exists() and _alive(pid)
    reaped = reap_now(make_drill(str(tmp_path), restore={"target": "ephemeral"}))
    assert reaped["clusters"] == [str(left)]
    assert _gone(left, pid)


def test_clusters_the_reap_task_removed_are_reported_by_the_drill(drill_runner, tmp_path):
    result = drill_runner(
        make_drill(str(tmp_path / "no_backups"), restore={"target": "ephemeral"}),
        reaped_clusters=["/tmp/drillbook-ephemeral-abc"],
    )
    reaped = [f for f in result.findings if f.code == "SCRATCH_REAPED"]
    assert [f.subject for f in reaped] == ["/tmp/drillbook-ephemeral-abc"]
    assert "ephemeral cluster left by a killed drill" in reaped[0].message
