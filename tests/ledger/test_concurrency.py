"""Concurrent writers from several processes keep one unbroken chain.

One scenario, run once for the module (spawning eight interpreters is the slow
part): eight processes, each with its own connection, pass a barrier and all
record the same task (a racing retry), pass it again and then append 200
records each.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from drillbook.ledger.store import Ledger
from tests.ledger import workers

PROCESSES = 8
PER_PROCESS = 200


@dataclass
class Scenario:
    dsn: str
    outcomes: list  # (worker, pid, (retry seq, retry created), [seqs])


@pytest.fixture(scope="module")
def scenario(pg) -> Iterator[Scenario]:
    name = pg.create_database("ledger_conc")
    dsn = pg.dsn(name)
    Ledger(dsn).init_schema()
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(PROCESSES)
    results = spawn.Queue()
    procs = [
        spawn.Process(target=workers.race_then_write, args=(dsn, w, PER_PROCESS, start, results))
        for w in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    try:
        outcomes = sorted(results.get(timeout=300) for _ in procs)
    except queue.Empty:
        raise AssertionError("a writer process did not finish in 300 s") from None
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    assert [proc.exitcode for proc in procs] == [0] * PROCESSES
    try:
        yield Scenario(dsn=dsn, outcomes=outcomes)
    finally:
        pg.drop_database(name)


def test_racing_retries_of_one_task_write_one_record(scenario):
    retries = [retry for _, _, retry, _ in scenario.outcomes]
    assert {seq for seq, _ in retries} == {1}
    assert sum(created for _, created in retries) == 1
    with Ledger(scenario.dsn) as ledger:
        assert len(ledger.query(drill="orders_nightly")) == 1


def test_eight_writer_processes_keep_one_unbroken_chain(scenario):
    assert len({pid for _, pid, _, _ in scenario.outcomes}) == PROCESSES
    seqs = [batch for _, _, _, batch in scenario.outcomes]
    total = PROCESSES * PER_PROCESS
    assert sorted(s for batch in seqs for s in batch) == list(range(2, total + 2))
    for batch in seqs:  # each writer saw its own records in increasing chain order
        assert batch == sorted(batch)
    interleaved = sum(1 for batch in seqs if batch[-1] - batch[0] >= PER_PROCESS)
    assert interleaved >= 2, "the writers ran one after another; the test proved nothing about concurrency"
    with Ledger(scenario.dsn) as ledger:
        report = ledger.verify()
        assert (report.ok, report.checked) == (True, total + 1), report.message
        assert report.head_hash == ledger.head().hash
        records = ledger.query()
    assert len({r.prev_hash for r in records}) == total + 1  # no two records share a parent: no fork
    assert {r.drill for r in records} == {"orders_nightly"} | {f"drill_{w}" for w in range(PROCESSES)}
