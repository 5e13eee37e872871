"""Concurrent writers from several processes keep one unbroken chain."""

from __future__ import annotations

import multiprocessing

from tests.ledger import workers

PROCESSES = 8
PER_PROCESS = 200


def test_eight_writer_processes_keep_one_unbroken_chain(ledger, ledger_dsn):
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(PROCESSES) as pool:
        jobs = [pool.apply_async(workers.write_many, (ledger_dsn, w, PER_PROCESS)) for w in range(PROCESSES)]
        seqs = [job.get(timeout=300) for job in jobs]
    total = PROCESSES * PER_PROCESS
    assert sorted(s for batch in seqs for s in batch) == list(range(1, total + 1))
    for batch in seqs:  # each writer saw its own records in increasing chain order
        assert batch == sorted(batch)
    report = ledger.verify()
    assert (report.ok, report.checked) == (True, total), report.message
    assert report.head_hash == ledger.head().hash
    records = ledger.query()
    assert len({r.prev_hash for r in records}) == total  # no two records share a parent: no fork
    assert {r.drill for r in records} == {f"drill_{w}" for w in range(PROCESSES)}


def test_racing_retries_of_one_task_write_one_record(ledger, ledger_dsn):
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(PROCESSES) as pool:
        outcomes = pool.starmap(workers.retry_same_task, [(ledger_dsn, w) for w in range(PROCESSES)])
    assert {seq for seq, _ in outcomes} == {1}
    assert sum(created for _, created in outcomes) == 1
    assert ledger.count() == 1 and ledger.verify().ok
