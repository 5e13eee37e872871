"""Writer processes for the concurrency tests (importable by spawned children)."""

from __future__ import annotations

import os
from typing import Any


def race_then_write(dsn: str, worker: int, count: int, start: Any, results: Any) -> None:
    """All writers start together: first every one records the same task, then ``count`` records of its own."""
    from drillbook.ledger.store import Ledger
    from tests.ledger.conftest import ctx, make_result

    with Ledger(dsn) as ledger:
        ledger.schema_version()  # connect before the start line
        start.wait(timeout=120)
        retry = ledger.record(make_result(), ctx("the_same_run", try_number=worker + 1))
        start.wait(timeout=120)
        seqs = [
            ledger.record(make_result(drill=f"drill_{worker}", fail=i % 7 == 0), ctx(f"w{worker}_r{i}")).seq
            for i in range(count)
        ]
    results.put((worker, os.getpid(), (retry.seq, retry.created), seqs))
