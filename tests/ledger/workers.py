"""Writer processes for the concurrency tests (importable by spawned children)."""

from __future__ import annotations


def write_many(dsn: str, worker: int, count: int) -> list[int]:
    """Append ``count`` records from one process over its own connection; return their seqs."""
    from drillbook.ledger.store import Ledger
    from tests.ledger.conftest import ctx, make_result

    with Ledger(dsn) as ledger:
        return [
            ledger.record(make_result(drill=f"drill_{worker}", fail=i % 7 == 0), ctx(f"w{worker}_r{i}")).seq
            for i in range(count)
        ]


def retry_same_task(dsn: str, worker: int) -> tuple[int, bool]:
    """Every process records the same task: only one may create it."""
    from drillbook.ledger.store import Ledger
    from tests.ledger.conftest import ctx, make_result

    with Ledger(dsn) as ledger:
        record = ledger.record(make_result(), ctx("the_same_run", try_number=worker + 1))
        return record.seq, record.created
