"""``lifetime.run_in_group``: the physical drills' tools (pgbackrest restore:local workers, Barman's rsync)
die with their leader's drill, on a timeout, a stop signal or the drill being SIGKILLed.

The tool here is ``sh`` starting a worker (``sleep``) that, like a pgBackRest local worker, does not
inherit the leader's death signal; each test names the worker by a unique argument and looks for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from drillbook.drills.backup_restore.lifetime import run_in_group

PLUGINS = str(Path(__file__).parents[2] / "plugins")


def _worker_argv(tag: str) -> list[str]:
    # the worker: a sleep whose argument is unique to the test; pgrep matches its whole command line only
    return ["/bin/sh", "-c", f"sleep 300.{tag} & echo started; wait"]


def _tag() -> str:
    return str(uuid.uuid4().int % 10**9)


def _alive(tag: str) -> bool:
    found = subprocess.run(["pgrep", "-f", f"^sleep 300[.]{tag}$"], capture_output=True, text=True)
    return found.stdout.strip() != ""


def _gone_within(tag: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(tag):
            return True
        time.sleep(0.05)
    return False


def test_a_tool_that_ends_returns_its_output_and_exit_code():
    done = run_in_group(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (3, b"out\n", b"err\n")


def test_a_timeout_kills_the_workers_too_not_only_the_leader():
    tag = _tag()
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            run_in_group(_worker_argv(tag), timeout=1)
        assert _gone_within(tag, 5), "a worker outlived the timeout"
    finally:
        subprocess.run(["pkill", "-f", f"^sleep 300[.]{tag}$"], check=False)


def test_a_drill_killed_with_sigkill_takes_the_workers_along():
    """The case the pgBackRest kill test found flaky: the leader dies with the drill (death signal), but
    its worker kept writing into the scratch directory until it next spoke to the leader."""
    tag = _tag()
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from drillbook.drills.backup_restore.lifetime import run_in_group;"
        f"run_in_group({_worker_argv(tag)!r}, timeout=300)"
    )
    drill = subprocess.Popen([sys.executable, "-c", code, PLUGINS])
    try:
        deadline = time.monotonic() + 30
        while not _alive(tag) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _alive(tag), "the worker never started"
        os.kill(drill.pid, signal.SIGKILL)
        drill.wait(timeout=30)
        assert _gone_within(tag, 5), "a worker outlived its SIGKILLed drill"
    finally:
        if drill.poll() is None:
            drill.kill()
        subprocess.run(["pkill", "-f", f"^sleep 300[.]{tag}$"], check=False)
