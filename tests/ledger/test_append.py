"""Appending evidence: the chain from genesis, idempotent retries, notification and event rows."""

from __future__ import annotations

import psycopg
import pytest

from drillbook.errors import LedgerError, LedgerNotInitialised
from drillbook.ledger.canonical import GENESIS_HASH, record_hash
from drillbook.ledger.schema import LATEST_VERSION
from drillbook.ledger.store import Ledger
from drillbook.result import DrillResult, Verdict
from tests.ledger.conftest import ctx, fill, make_result


def test_records_chain_from_genesis_and_rebuild_the_result(ledger):
    result = make_result()
    first = ledger.record(result, ctx("run_1"))
    second = ledger.record(make_result(fail=True), ctx("run_2"))
    assert (first.seq, first.created, first.prev_hash) == (1, True, GENESIS_HASH)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert second.verdict == "FAIL" and second.codes == ["RTO_EXCEEDED"]
    assert first.controls == ["SOC2:A1.2", "NIST:CP-9(1)"]
    assert DrillResult.model_validate(first.result) == result
    stored = ledger.get(1)
    assert stored == first and record_hash(stored.__dict__) == stored.hash
    report = ledger.verify()
    assert report.ok and report.checked == 2 and report.head_hash == second.hash


def test_a_retried_task_returns_the_existing_record_and_writes_nothing(ledger):
    first = ledger.record(make_result(), ctx("run_1", try_number=1))
    retry = ledger.record(make_result(fail=True), ctx("run_1", try_number=2))
    assert retry.created is False
    assert (retry.seq, retry.hash, retry.verdict, retry.try_number) == (first.seq, first.hash, "PASS", 1)
    mapped = ledger.record(make_result(), ctx("run_1", map_index=0))
    assert mapped.created and mapped.seq == 2
    assert ledger.count() == 2


def test_notify_failure_is_its_own_record_once_per_attempt(ledger):
    result = make_result()
    drill_record = ledger.record(result, ctx("run_1"))
    error = ConnectionError("slack down: token=xoxb-123456789-abcdef")
    note = ledger.record_notify_failure(result, ctx("run_1"), error=error)
    assert note.created and note.record_type == "notification" and note.seq == drill_record.seq + 1
    assert note.verdict == "FAIL" and note.codes == ["NOTIFY_FAILED"]
    finding = note.result["findings"][0]
    assert "ConnectionError" in finding["message"] and "xoxb-123456789" not in finding["message"]
    assert finding["detail"]["error_type"] == "ConnectionError"
    again = ledger.record_notify_failure(result, ctx("run_1"), error=error)
    assert again.created is False and again.seq == note.seq
    next_try = ledger.record_notify_failure(result, ctx("run_1", try_number=2), error=error)
    assert next_try.created and next_try.seq == note.seq + 1
    assert ledger.verify().ok


def test_watchdog_and_digest_events(ledger):
    a = ledger.record_event(
        "watchdog", make_result(drill="orders_nightly", fail=True), ctx("wd_1", task="watch")
    )
    b = ledger.record_event("watchdog", make_result(drill="billing", fail=True), ctx("wd_1", task="watch"))
    c = ledger.record_event("watchdog", make_result(drill="billing", fail=True), ctx("wd_1", task="watch"))
    d = ledger.record_event("digest", make_result(drill="billing"), ctx("wd_1", task="watch"))
    assert [a.created, b.created, c.created, d.created] == [True, True, False, True]
    assert [r.record_type for r in ledger.query()] == ["watchdog", "watchdog", "digest"]
    with pytest.raises(LedgerError, match="record_type 'watchdog', 'digest' or 'notification'"):
        ledger.record_event("drill", make_result(), ctx())


def test_a_notification_event_shares_the_per_attempt_key(ledger):
    note = ledger.record_event("notification", make_result(), ctx("run_1"))
    assert note.created and note.record_type == "notification"
    again = ledger.record_notify_failure(make_result(), ctx("run_1"), error=RuntimeError("x"))
    assert again.created is False and again.seq == note.seq
    assert ledger.record_event("notification", make_result(), ctx("run_1", try_number=2)).seq == 2


def test_last_pass_is_the_newest_pass_of_that_drill(ledger):
    assert ledger.last_pass(kind="backup_restore", drill="orders_nightly") is None
    passed = ledger.record(make_result(), ctx("run_1"))
    ledger.record(make_result(fail=True), ctx("run_2"))
    ledger.record(make_result(drill="billing"), ctx("run_3"))
    ledger.record_event("watchdog", make_result(), ctx("run_4"))  # not a drill record
    found = ledger.last_pass(kind="backup_restore", drill="orders_nightly")
    assert found is not None and found.seq == passed.seq
    assert ledger.last_pass(kind="certificates", drill="orders_nightly") is None


def test_query_filters(ledger):
    fill(ledger, 2, controls=("SOC2:A1.2",))
    fill(ledger, 1, drill="billing", controls=("DORA:Art.12",), fail=True)
    assert [r.seq for r in ledger.query(control="SOC2:A1.2")] == [1, 2]
    assert [r.seq for r in ledger.query(verdict="fail")] == [3]
    assert [r.seq for r in ledger.query(drill="billing", kind="backup-restore")] == [3]
    assert [r.seq for r in ledger.query(limit=2, newest_first=True)] == [3, 2]
    assert ledger.query(since=ledger.get(3).recorded_at)[0].seq == 3
    assert [r.seq for r in ledger.query(until=ledger.get(2).recorded_at)] == [1]


def test_schema_init_is_idempotent_and_required(fresh_db):
    with Ledger(fresh_db) as ledger:
        with pytest.raises(LedgerNotInitialised, match="drillbook ledger init"):
            ledger.record(make_result(), ctx())
        assert ledger.init_schema() == list(range(1, LATEST_VERSION + 1))
        assert ledger.init_schema() == []
        assert ledger.schema_version() == LATEST_VERSION
    with Ledger(fresh_db) as again:
        assert again.record(make_result(), ctx()).seq == 1


def test_auto_init_creates_the_schema(fresh_db):
    with Ledger(fresh_db, auto_init=True) as ledger:
        assert ledger.record(make_result(), ctx()).seq == 1


def test_unreachable_ledger_is_a_clear_error():
    ledger = Ledger("postgresql://drillbook:pw-never-shown@127.0.0.1:1/ledger", connect_timeout=2)
    with pytest.raises(
        LedgerError, match=r"cannot connect to the evidence ledger at 127\.0\.0\.1:1/ledger"
    ) as info:
        ledger.record(make_result(), ctx())
    assert "pw-never-shown" not in str(info.value)


def test_what_is_hashed_is_what_is_stored_even_for_awkward_values(ledger, ledger_dsn):
    result = make_result()
    result.measurements.values.update({"huge": 1e23, "tiny": 1.5e-07, "negzero": -0.0, "big_int": 2**70})
    result.details.update(
        {
            "nan": float("nan"),
            "inf": float("inf"),
            "nul": "a\x00b",
            "surrogate": "x\ud800y",
            "unicode": "żółć ✓ 𝄞",
            "nested": {"b": [1, 2.50, {"z": None}], "a": True},
        }
    )
    record = ledger.record(result, ctx())
    assert ledger.verify().ok
    reread = ledger.get(record.seq)
    assert record_hash(reread.__dict__) == reread.hash == record.hash
    assert reread.result["measurements"]["values"]["huge"] == 1e23
    assert reread.result["details"]["nul"] == "a\ufffdb"


def test_verdicts_are_kept_verbatim(ledger):
    result = make_result()
    skipped = result.model_copy(update={"verdict": Verdict.SKIPPED})
    assert ledger.record(skipped, ctx()).verdict == "SKIPPED"


def test_the_chain_cannot_fork_even_without_the_lock(ledger, ledger_dsn):
    first = ledger.record(make_result(), ctx("run_1"))
    raw = (
        "INSERT INTO drillbook_evidence SELECT {seq}, recorded_at - interval '60 days', record_type, kind, drill, "
        "target, verdict, controls, dag_id, 'other{seq}', task_id, map_index, try_number, trigger, result, prev_hash, "
        "repeat('a', 64) FROM drillbook_evidence WHERE seq = %s RETURNING seq, prev_hash, hash, recorded_at"
    )
    # A raw INSERT that skips the lock and forges seq, prev_hash, time and hash is sealed by the database:
    # it becomes the next link with the server's clock and its true hash.
    with psycopg.connect(ledger_dsn) as conn:
        seq, prev_hash, hash_, at = conn.execute(raw.format(seq=2), (first.seq,)).fetchone()
    assert (seq, prev_hash) == (2, first.hash) and hash_ != "a" * 64 and at > first.recorded_at
    assert ledger.verify().ok
    # With the seal switched off (superuser, replica mode) the unique prev_hash still refuses a fork.
    with psycopg.connect(ledger_dsn) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("SET session_replication_role = replica")
        conn.execute(raw.format(seq=3), (first.seq,))
