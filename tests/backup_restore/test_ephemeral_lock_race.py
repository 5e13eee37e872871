"""A cluster directory is never seen by a reaper without its held lock (ephemeral_reap.hold_lock).

Created and then flock'ed in two steps, a reaper in another drill running in between took the new
cluster for a dead one and removed it under its drill (two drills of one stanza started together
failed with RESTORE_FAILED). A reaper looping in another process (real parallelism) must remove none
of the clusters being created; with the two-step lock it removed about 1 in 80.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drillbook.drills.backup_restore import ephemeral_reap

PLUGINS = str(Path(__file__).resolve().parents[2] / "plugins")
_REAPER = """
import os, sys
sys.path.insert(0, sys.argv[1])
from drillbook.drills.backup_restore import ephemeral_reap
print("ready", flush=True)
while True:
    ephemeral_reap.reap({os.geteuid()}, sys.argv[2])
"""


def test_a_reaper_never_removes_a_cluster_being_created(tmp_path: Path) -> None:
    reaper = subprocess.Popen(
        [sys.executable, "-c", _REAPER, PLUGINS, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reaper.stdout is not None and reaper.stdout.readline().strip() == "ready"
        lost = 0
        for _ in range(4):  # batches: every lock stays held while the reaper keeps looking
            held = []
            for _ in range(400):
                root = Path(tempfile.mkdtemp(prefix=ephemeral_reap.PREFIX, dir=tmp_path))
                held.append((root, ephemeral_reap.hold_lock(root)))
            time.sleep(0.3)  # a reaper that took one for dead is removing it now
            lost += sum(not root.exists() for root, _ in held)
            for _, fd in held:
                os.close(fd)
    finally:
        reaper.kill()
        reaper.wait(timeout=30)
    assert lost == 0, f"{lost} clusters were reaped while their drill held them"


def test_the_lock_is_held_and_named_as_the_reaper_expects(tmp_path: Path) -> None:
    import fcntl

    fd = ephemeral_reap.hold_lock(tmp_path)
    try:
        assert [p.name for p in tmp_path.iterdir()] == [ephemeral_reap.LOCK_NAME]
        other = os.open(tmp_path / ephemeral_reap.LOCK_NAME, os.O_RDWR)
        try:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = False
            except OSError:
                held = True
            assert held, "owner.lock was not locked"
        finally:
            os.close(other)
    finally:
        os.close(fd)
