"""A scratch cluster's server binaries run through one path (``EphemeralCluster._run``): as the cluster's OS user,
in its directory, with the server's bare environment. Each caller names its own failure: an ephemeral cluster
that cannot start is ``EphemeralUnavailable``; a restored cluster's ``pg_controldata`` / ``postgres -C`` failing
is ``RECOVERY_FAILED`` (``RecoveryProblem``). Every failure names the binary and never escapes as a traceback."""

from __future__ import annotations

import pytest

from drillbook.drills.backup_restore.ephemeral import EphemeralCluster, EphemeralUnavailable
from drillbook.drills.backup_restore.physical.restored import RecoveryProblem, RestoredCluster


def _restored(tmp_path) -> RestoredCluster:
    cluster = RestoredCluster(user=None)
    cluster.root = tmp_path
    return cluster


def test_a_binary_that_succeeds_gives_its_output_without_the_drills_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DRILLBOOK_TEST_SECRET", "do-not-pass-on")
    out = _restored(tmp_path)._out(["/bin/sh", "-c", 'pwd; echo "[$DRILLBOOK_TEST_SECRET]"'])
    assert out.splitlines() == [str(tmp_path), "[]"]


@pytest.mark.parametrize(
    ("argv", "timeout", "expected"),
    [
        (["/bin/sh", "-c", "echo broken control file >&2; exit 3"], 10, "sh exited 3: broken control file"),
        (["/nonexistent/pg_controldata"], 10, "pg_controldata: FileNotFoundError"),
        (["/bin/sh", "-c", "sleep 5"], 0.2, "sh: TimeoutExpired"),
    ],
)
def test_a_failing_binary_is_named_in_each_callers_own_error(tmp_path, argv, timeout, expected):
    with pytest.raises(RecoveryProblem) as restored:
        _restored(tmp_path)._out(argv, timeout)
    assert restored.value.code == "RECOVERY_FAILED" and restored.value.message.startswith(expected)

    ephemeral = EphemeralCluster(min_major=None)
    ephemeral.root = tmp_path
    with pytest.raises(EphemeralUnavailable) as unavailable:
        ephemeral._cmd(argv, timeout)
    assert str(unavailable.value).startswith(expected)
    assert not isinstance(unavailable.value, RecoveryProblem)
