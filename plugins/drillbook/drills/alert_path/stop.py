"""Which stop state the path this thread proves is under, and holding a stop signal while a resolve runs.

Rule this module enforces: a stop signal (SIGTERM/SIGINT) that arrives while a canary is being
resolved is noted, not raised, until the resolve has finished (a half-done resolve leaves an
alert firing at the far end); it is raised right after. ``drill.run_path`` sets ``running.stop``
for the thread; ``resolve`` holds signals through ``signals_held``. Neither imports the other.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from drillbook.drills.backup_restore.lifetime import Interrupted, StopState

running = threading.local()  # .stop: the StopState of the path this thread is proving


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Note a stop signal instead of raising it while the block runs (a resolve must finish); raise it after."""
    state: StopState | None = getattr(running, "stop", None)
    if state is None or state.deferred:
        yield
        return
    state.deferred = True
    try:
        yield
    finally:
        state.deferred = False
    if state.signum is not None:
        raise Interrupted(state.signum)
