"""Process lifetime of a drill: a stop signal ends it with evidence, and its tools die with it.

Rules this module enforces:
- SIGTERM or SIGINT to a process running a drill raises ``Interrupted`` (a
  ``BaseException``, so no ``except Exception`` in a phase swallows it) in the
  main thread; the restore's ``finally`` kills the tool's process group, the
  drill drops its scratch database and reports ``DRILL_INTERRUPTED`` (ERROR),
  and the CLI records that result before it exits with 128 + the signal
  number. Later stop signals are ignored while that happens (it is bounded by
  the drop's retry and the ledger's timeouts); SIGKILL still works;
- a child tool (``pg_restore``, ``psql``) is started with
  ``PR_SET_PDEATHSIG = SIGKILL`` (Linux, through ``prctl``) so a SIGKILLed
  parent takes it along; its ``-j`` workers do not inherit that, so a
  watchdog ``sh`` (``watch_group``) reading a pipe only the drill holds kills
  the tool's whole process group when the pipe closes, i.e. when the drill
  dies. (A death signal follows the *thread* that started the process; the
  pipe does not depend on threads.) The watchdog runs in a session of its own,
  so a SIGKILL to the drill's whole process group does not take it along.
This module imports no Airflow; the Airflow task runner has its own SIGTERM
handling, under which the restore's process-group kill still applies.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """The process was asked to stop (SIGTERM/SIGINT) while a drill ran."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopState:
    """What ``stop_on_signals`` saw: the first stop signal, and whether it is deferred now."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferred = False

    def defer(self) -> None:
        """From now on a stop signal is only noted (the evidence is being recorded); see ``exit_code``."""
        self.deferred = True

    def exit_code(self, default: int) -> int:
        return 128 + self.signum if self.signum is not None else default


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopState]:
    """Turn the first SIGTERM/SIGINT into ``Interrupted`` (or only note it once deferred).

    Later stop signals are ignored until the block ends. Outside the main thread
    (signal handlers can only be set there) this installs nothing.
    """
    state = StopState()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def _handler(signum: int, _frame: object) -> None:
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)  # finish the teardown and the record, once
        state.signum = signum
        if not state.deferred:
            raise Interrupted(signum)

    for s in STOP_SIGNALS:
        signal.signal(s, _handler)
    try:
        yield state
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _make_pdeathsig() -> Callable[[int], object] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    # resolved here, in the parent: between fork and exec the child only makes the call
    return lambda sig: prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


_PDEATHSIG = _make_pdeathsig()
#: Waits for EOF on stdin (the drill's end of a pipe closes when the drill dies), then SIGKILLs group $1.
_WATCHDOG = 'read _; kill -9 -"$1" 2>/dev/null'


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that sends the child ``sig`` when its parent dies (None where prctl is missing)."""
    if _PDEATHSIG is None:
        return None
    parent = os.getpid()
    setter = _PDEATHSIG

    def _preexec() -> None:
        setter(sig)
        if os.getppid() != parent:  # the parent died before the death signal was armed
            os._exit(1)

    return _preexec


class Watchdog:
    """A ``sh`` that kills a process group when this process dies; see ``watch_group``."""

    def __init__(self, proc: subprocess.Popen[bytes], pipe_w: int):
        self.proc = proc
        self.pipe_w = pipe_w


def watch_group(pgid: int) -> Watchdog | None:
    """Start a watchdog that SIGKILLs process group ``pgid`` if this process dies; stop it with ``unwatch``.

    ``pg_restore -j`` workers do not inherit the death signal, and a worker in
    the middle of a large table would load on for its whole length. The
    watchdog reads a pipe whose only writer is this process: the kernel closes
    it when this process dies, however it dies, and the watchdog then kills the
    whole group. It starts no child of its own, so it leaves no zombie behind.
    """
    if not os.path.exists("/bin/sh"):
        return None
    pipe_r, pipe_w = os.pipe()  # both ends are non-inheritable: no other child holds the writer
    try:
        # its own session: a supervisor that SIGKILLs the drill's whole process group (Airflow's task
        # runner, a container stop, `kill -9 -PGID`) must not take the watchdog along with the drill
        proc = subprocess.Popen(
            ["/bin/sh", "-c", _WATCHDOG, "drillbook-watchdog", str(pgid)],
            stdin=pipe_r,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        os.close(pipe_w)
        return None
    finally:
        os.close(pipe_r)
    return Watchdog(proc, pipe_w)


def unwatch(watchdog: Watchdog | None) -> None:
    """Stop a watchdog without letting it fire: kill it first, then close the pipe."""
    if watchdog is None:
        return
    if watchdog.proc.poll() is None:
        watchdog.proc.kill()
    watchdog.proc.wait()
    os.close(watchdog.pipe_w)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a tool started in a session of its own and every process of its group (its workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()  # the group is gone already; make sure the leader is too


def run_in_group(argv: list[str], *, timeout: float, **popen: Any) -> subprocess.CompletedProcess[bytes]:
    """``subprocess.run(argv, capture_output=True, timeout=timeout)`` for a tool that starts workers.

    pgBackRest runs a restore in ``restore:local`` worker processes and Barman copies with rsync; neither
    inherits the leader's death signal, and ``subprocess.run`` kills only the leader on a timeout. Here
    the tool gets a session (process group) of its own, dies with this process (``die_with_parent``),
    and a watchdog (``watch_group``) kills the whole group if this process dies; a timeout, a stop signal
    (``Interrupted``) or any other exception kills the group before it propagates.
    """
    proc: subprocess.Popen[bytes] = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=die_with_parent(),
        **popen,
    )
    watchdog = watch_group(proc.pid)
    try:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            kill_group(proc)
            proc.communicate()
            raise
    finally:
        unwatch(watchdog)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)
