"""The evidence spool never blocks and never grows forever: torn and unreplayable entries are quarantined
to ``<spool>.rejected`` (kept for an auditor, named loudly), and the spool is compacted after a replay.

Real PostgreSQL (the session's pgserver) behind a real Ledger; the spool entries are written the way
``Ledger._spool_record`` writes them.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest

from drillbook.cli import ledger_cmds
from drillbook.ledger.spool import EvidenceSpool, SpoolEntry
from drillbook.ledger.store import Ledger
from drillbook.run.pipeline import record_and_report
from tests.ledger.conftest import ctx, make_result


@pytest.fixture
def spool(tmp_path) -> EvidenceSpool:
    return EvidenceSpool(tmp_path / "evidence-spool.jsonl")  # the path conftest puts in DRILLBOOK_SPOOL


def spooled(spool: EvidenceSpool, where: str, run: str, **result: object) -> SpoolEntry:
    """Append an entry owed to the ledger at ``where``, as a run whose ledger was down would."""
    doc = make_result().to_json_dict()
    doc.update(result)
    return spool.append(
        SpoolEntry(
            record_type="drill",
            ctx=dataclasses.asdict(ctx(run)),
            ledger=where,
            result=doc,
            reason="AdminShutdown",
        )
    )


def rows(ledger: Ledger) -> list[str]:
    return [r.run_id for r in ledger.query()]


def flush(capsys) -> tuple[int, str, str]:
    code = ledger_cmds.main(["ledger", "flush"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_torn_line_is_quarantined_once_and_the_spool_is_emptied(
    ledger, ledger_dsn, spool, monkeypatch, capsys
):
    monkeypatch.setenv("DRILLBOOK_LEDGER_DSN", ledger_dsn)
    spooled(spool, ledger.where, "run_1")
    with spool.path.open("a") as fh:
        fh.write('{"op": "record", "id": "torn')  # a write cut off by a crash
    spooled(spool, ledger.where, "run_2")  # the next writer starts on a line of its own
    # red before: every flush exited 2 ("not a spool entry ... skipped") and the file was never emptied
    code, out, err = flush(capsys)
    assert code == 2
    assert "2 record(s) replayed, 0 left, 1 moved to" in out
    assert (
        f"QUARANTINED: {spool.path}:2: not a spool entry (a torn write?); moved to {spool.rejected_path}"
        in err
    )
    assert rows(ledger) == ["run_1", "run_2"]
    assert spool.path.stat().st_size == 0  # compacted
    [kept] = [json.loads(line) for line in spool.rejected_path.read_text().splitlines()]
    assert (
        kept["raw"] == '{"op": "record", "id": "torn' and kept["line"] == 2 and "torn write" in kept["reason"]
    )
    code, out, err = flush(capsys)  # the next flush: nothing blocks any more, the quarantine is still named
    assert code == 0 and "is empty: nothing to replay" in out
    assert f"1 entry kept for an auditor in {spool.rejected_path}" in err
    assert ledger_cmds.main(["ledger", "status"]) == 0
    assert (
        f"QUARANTINED: 1 evidence spool entry could not be replayed and wait for an auditor in {spool.rejected_path}"
        in capsys.readouterr().out
    )


def test_a_spool_holding_only_a_torn_line_is_emptied_too(ledger, ledger_dsn, spool):
    spool.path.write_bytes(b'{"op": "rec')
    report = ledger.__class__(ledger_dsn, spool=spool).flush_spool()
    assert len(report.quarantined) == 1 and spool.path.stat().st_size == 0 and spool.rejected() == 1


def test_an_entry_that_can_never_be_appended_is_quarantined_the_rest_replays(ledger, ledger_dsn, spool):
    spooled(spool, ledger.where, "run_1")
    bad = spooled(spool, ledger.where, "run_bad", verdict="MAYBE")  # no longer validates as a DrillResult
    spooled(spool, ledger.where, "run_3")
    report = Ledger(ledger_dsn, spool=spool).flush_spool()
    assert [r.run_id for r in report.records] == ["run_1", "run_3"] and report.remaining == 0
    [line] = report.quarantined
    assert line.startswith(
        f"spool entry {bad.id[:12]} (drill of 'orders_nightly') cannot be appended: ValidationError"
    )
    assert spool.path.stat().st_size == 0
    [kept] = [json.loads(x) for x in spool.rejected_path.read_text().splitlines()]
    assert (
        kept["entry"]["id"] == bad.id and kept["entry"]["result"]["verdict"] == "MAYBE"
    )  # kept whole for the auditor
    assert rows(ledger) == ["run_1", "run_3"]
    assert Ledger(ledger_dsn, spool=spool).flush_spool().records == []  # nothing is tried again


def test_entries_for_another_ledger_are_kept_and_the_rest_compacted_away(ledger, ledger_dsn, spool):
    for i in range(20):
        spooled(spool, ledger.where, f"run_{i}")
    waiting = spooled(spool, "elsewhere:5432/ledger", "run_other")
    before = spool.path.stat().st_size
    report = Ledger(ledger_dsn, spool=spool).flush_spool()
    assert len(report.records) == 20 and report.other_ledgers == 1
    # red before: the file kept 21 record lines plus 20 done lines, and grew with every run after
    lines = [json.loads(x) for x in spool.path.read_text().splitlines()]
    assert [(d["op"], d["id"]) for d in lines] == [("record", waiting.id)]
    assert spool.path.stat().st_size < before / 10
    assert spool.read().pending[0].ctx["run_id"] == "run_other"
    for i in range(5):  # the spool stays as small as what it owes
        spooled(spool, ledger.where, f"later_{i}")
        Ledger(ledger_dsn, spool=spool).flush_spool()
        assert len(spool.path.read_text().splitlines()) == 1


def test_a_writer_waiting_for_the_lock_during_a_compaction_writes_into_the_new_file(ledger, spool):
    for i in range(3):
        spooled(spool, ledger.where, f"run_{i}")
    spooled(spool, "elsewhere:5432/ledger", "run_other")
    appended: list[SpoolEntry] = []
    with spool.replaying() as session:  # hold the lock as a replay does; mark everything of ours done
        for entry in [e for e in session.state.pending if e.ledger == ledger.where]:
            session.mark_done(entry, seq=1)
        writer = threading.Thread(
            target=lambda: appended.append(spooled(EvidenceSpool(spool.path), ledger.where, "late"))
        )
        writer.start()
        time.sleep(0.5)  # the writer has opened the old file and waits for its lock
        assert writer.is_alive() and not appended
    writer.join(
        timeout=10
    )  # the replay compacted (rename) and unlocked: the writer must not write into the old inode
    assert appended
    assert sorted(e.ctx["run_id"] for e in spool.read().pending) == ["late", "run_other"]


def test_every_report_carries_evidence_quarantined_while_the_rejected_file_exists(ledger_dsn, spool):
    store = Ledger(ledger_dsn, spool=spool)
    healthy = record_and_report(make_result(), ctx=ctx("run_a"), ledger=store, notifier=None)
    assert "EVIDENCE_QUARANTINED" not in healthy.result.codes()
    spool.path.write_bytes(b'{"op": "rec')  # a torn line: the next record replays the spool first
    reported = record_and_report(make_result(), ctx=ctx("run_b"), ledger=store, notifier=None)
    assert "EVIDENCE_QUARANTINED" in reported.result.codes()
    [note] = [f for f in reported.result.findings if f.code == "EVIDENCE_QUARANTINED"]
    assert str(spool.rejected_path) in note.message and note.severity.value == "high"
    assert reported.result.verdict.value == "PASS"  # the note does not change the verdict
    assert "EVIDENCE_QUARANTINED" not in store.get(reported.record.seq).codes  # nor what the ledger holds
    spool.rejected_path.unlink()  # the auditor took it
    assert (
        "EVIDENCE_QUARANTINED"
        not in record_and_report(make_result(), ctx=ctx("run_c"), ledger=store, notifier=None).result.codes()
    )
