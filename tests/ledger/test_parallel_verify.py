"""A chain walk split over several connections reports exactly what one stream reports.

``verify_ledger`` splits a long walk into consecutive seq ranges read on their own connections from one
exported snapshot and stitches them (``verify.stitch``). Here the split is forced on small ledgers
(``workers=2``/``3``) and every tamper is put at a range boundary: each must be reported with the same
reason, seq, count and words as the single-stream walk (``workers=1``), on a real PostgreSQL.
"""

from __future__ import annotations

import hashlib
import random
import threading
from datetime import timedelta

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drillbook.ledger import chainstream
from drillbook.ledger.canonical import COLUMNS, GENESIS_HASH, canonical_json, record_hash
from drillbook.ledger.checkpoint import CheckpointSettings
from drillbook.ledger.verify import stitch, walk_stream
from tests.ledger.conftest import ctx, fill, make_result, tamper

N = 12  # workers=2 splits after seq 6; workers=3 after seq 4 and 8


def _same(ledger, **kwargs):
    """The report of one stream and of 2- and 3-range walks: all equal (notes included); returns it."""
    one = ledger.verify(full=True, workers=1, **kwargs)
    real, opened = ledger._another_connection, []

    def counted():
        opened.append(1)
        return real()

    ledger._another_connection = counted
    try:
        for k in (2, 3):
            split = ledger.verify(full=True, workers=k, **kwargs)
            assert split == one, (k, split, one)
    finally:
        del ledger._another_connection
    assert len(opened) == 1 + 2  # the walks were really split
    return one


def _forge(ledger, ledger_dsn, seq: int, **changes) -> None:
    """Replace record ``seq`` by one with ``changes`` and a correct hash of its own (a superuser's forgery)."""
    rec = ledger.get(seq)
    fields = {c: getattr(rec, c) for c in COLUMNS}
    fields.update(changes)
    text = canonical_json(fields["result"])
    digest = record_hash({**fields, "result": text})
    sets = ", ".join(f"{name} = %s" for name in changes)
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            f"UPDATE drillbook_evidence SET {sets}, hash = %s WHERE seq = %s",
            [*changes.values(), digest, seq],
        )


def test_a_healthy_multi_range_ledger_is_intact(ledger):
    records = fill(ledger, N)
    report = _same(ledger)
    assert (report.ok, report.checked, report.head_seq, report.head_hash) == (True, N, N, records[-1].hash)


@pytest.mark.parametrize(
    ("sql", "reason", "seq"),
    [
        # the first record of range 2 (workers=2) edited
        (
            "UPDATE drillbook_evidence SET verdict = 'FAIL' WHERE seq = 7",
            "edited",
            7,
        ),
        # the last record of range 1 edited
        ("UPDATE drillbook_evidence SET drill = 'other' WHERE seq = 6", "edited", 6),
        # the first record of range 2 deleted: range 2 starts one seq late
        ("DELETE FROM drillbook_evidence WHERE seq = 7", "deleted", 7),
        # the last record of range 1 deleted: range 1 ends one seq early
        ("DELETE FROM drillbook_evidence WHERE seq = 6", "deleted", 6),
        # a whole range deleted (workers=3: seq 5..8 is the middle range)
        ("DELETE FROM drillbook_evidence WHERE seq BETWEEN 5 AND 8", "deleted", 5),
        # the first record of the ledger (range 1's first row is checked against the genesis)
        ("DELETE FROM drillbook_evidence WHERE seq = 1", "deleted", 1),
        # the head (the last range's last row)
        ("UPDATE drillbook_evidence SET target = 'x' WHERE seq = 12", "edited", 12),
    ],
)
def test_a_tamper_at_a_range_boundary_is_reported_like_one_stream(ledger, ledger_dsn, sql, reason, seq):
    fill(ledger, N)
    tamper(ledger_dsn, sql)
    report = _same(ledger)
    assert (report.ok, report.reason, report.first_bad_seq) == (False, reason, seq), report.message


def test_a_pair_swapped_across_the_boundary_is_reordered(ledger, ledger_dsn):
    fill(ledger, N)
    tamper(
        ledger_dsn,
        "UPDATE drillbook_evidence SET seq = 1000 WHERE seq = 6",
        "UPDATE drillbook_evidence SET seq = 6 WHERE seq = 7",
        "UPDATE drillbook_evidence SET seq = 7 WHERE seq = 1000",
    )
    report = _same(ledger)
    assert (report.ok, report.reason, report.first_bad_seq, report.checked) == (False, "reordered", 6, 5)
    assert "does not link to seq=5" in report.message


@pytest.mark.parametrize("seq", [6, 7])
def test_a_backdated_record_at_the_boundary_is_caught(ledger, ledger_dsn, seq):
    """Its own hash is right (a superuser re-hashed it); only the time order says it is forged."""
    records = fill(ledger, N)
    _forge(ledger, ledger_dsn, seq, recorded_at=records[seq - 2].recorded_at - timedelta(days=1))
    report = _same(ledger)
    assert (report.ok, report.reason, report.first_bad_seq) == (False, "backdated", seq), report.message


def test_a_rehashed_edit_at_the_end_of_range_1_breaks_the_link_into_range_2(ledger, ledger_dsn):
    fill(ledger, N)
    _forge(ledger, ledger_dsn, 6, verdict="FAIL")
    report = _same(ledger)
    assert (report.ok, report.reason, report.first_bad_seq) == (False, "reordered", 7)


def test_the_first_failure_in_seq_order_wins_over_later_ranges(ledger, ledger_dsn):
    fill(ledger, N)
    tamper(
        ledger_dsn,
        "UPDATE drillbook_evidence SET verdict = 'FAIL' WHERE seq = 10",
        "UPDATE drillbook_evidence SET verdict = 'FAIL' WHERE seq = 3",
    )
    report = _same(ledger)
    assert (report.reason, report.first_bad_seq, report.checked) == ("edited", 3, 2)


def _signed() -> CheckpointSettings:
    return CheckpointSettings(private_key=Ed25519PrivateKey.generate().private_bytes_raw().hex())


def test_checkpoint_and_expected_head_in_a_later_range(ledger, ledger_dsn):
    """The checkpoint's record lies in range 2: its hash is still compared; cut rows are still found."""
    signed = _signed()
    records = fill(ledger, 9)
    ledger.checkpoint(source="test", settings=signed)
    fill(ledger, N - 9, drill="later")
    assert _same(ledger, checkpoints=signed).ok
    head = f"{records[-1].seq}:{records[-1].hash}"
    assert _same(ledger, expect_head=head).ok
    tamper(ledger_dsn, "DELETE FROM drillbook_evidence WHERE seq > 8")
    report = _same(ledger, checkpoints=signed)
    assert (report.ok, report.reason, report.first_bad_seq) == (False, "truncated", 9)
    report = _same(ledger, expect_head=head)
    assert (report.ok, report.reason) == (False, "truncated")


def test_a_rewritten_checkpointed_record_in_range_2_is_found(ledger, ledger_dsn):
    signed = _signed()
    fill(ledger, 9)
    ledger.checkpoint(source="test", settings=signed)
    fill(ledger, N - 9, drill="later")
    # Rewrite 9..12 with correct hashes and links: only the checkpoint can tell.
    for seq in range(9, N + 1):
        prev = ledger.get(seq - 1).hash
        _forge(ledger, ledger_dsn, seq, prev_hash=prev, verdict="FAIL")
    report = _same(ledger, checkpoints=signed)
    assert (report.ok, report.reason, report.first_bad_seq) == (False, "rewritten", 9), report.message


def test_the_ranges_read_the_walks_snapshot(ledger, ledger_dsn, monkeypatch):
    """A record appended after the walk began is in no range: every range reads the first connection's
    snapshot, not its own (without the imported snapshot the last range would see seq 13)."""
    fill(ledger, N)
    opened: list[int] = []
    lock = threading.Lock()
    real = ledger._another_connection

    def late_append():
        with lock:
            if not opened:
                with type(ledger)(ledger_dsn) as other:
                    other.record(make_result(drill="late"), ctx("late"))
            opened.append(1)
        return real()

    monkeypatch.setattr(ledger, "_another_connection", late_append)
    report = ledger.verify(full=True, workers=3)
    assert len(opened) == 2  # two extra connections: the split really happened
    assert (report.ok, report.checked, report.head_seq) == (True, N, N)
    assert ledger.verify(full=True, workers=3).checked == N + 1


def test_a_range_whose_connection_fails_is_walked_on_the_first_one(ledger, ledger_dsn, monkeypatch):
    """No extra connection (refused, too many clients): the same walk, the same findings, on one connection."""
    fill(ledger, N)
    refused: list[int] = []

    def refuse():
        refused.append(1)
        raise psycopg.OperationalError("too many clients already")

    monkeypatch.setattr(ledger, "_another_connection", refuse)
    assert ledger.verify(full=True, workers=3).checked == N
    assert len(refused) == 2
    tamper(ledger_dsn, "UPDATE drillbook_evidence SET verdict = 'FAIL' WHERE seq = 11")
    report = ledger.verify(full=True, workers=3)
    assert (report.ok, report.reason, report.first_bad_seq) == (False, "edited", 11)


def test_default_workers_split_only_long_walks(monkeypatch):
    monkeypatch.setattr(chainstream.os, "cpu_count", lambda: 8)
    assert chainstream.default_workers(chainstream.PARALLEL_MIN - 1) == 1
    assert chainstream.default_workers(chainstream.PARALLEL_MIN) == chainstream.MAX_WORKERS == 4
    monkeypatch.setattr(chainstream.os, "cpu_count", lambda: 2)
    assert chainstream.default_workers(10**6) == 2
    monkeypatch.setattr(chainstream.os, "cpu_count", lambda: None)
    assert chainstream.default_workers(10**6) == 1


# -- stitch against one walk_stream, every split of a synthetic chain --------------------------------
def _chain(n: int) -> list[tuple[int, str, str, str, bytes]]:
    rows, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        at = f"2026-01-01T00:{seq:02d}:00.000000Z"
        sha = hashlib.sha256((prev + f'{{"seq":{seq},"at":"{at}"}}').encode()).digest()
        digest = sha.hex()
        rows.append((seq, prev, digest, at, sha))
        prev = digest
    return rows


def _tampered(rows, rng: random.Random):
    rows = list(rows)
    i = rng.randrange(len(rows))
    how = rng.choice(["edit", "delete", "swap", "backdate", "relink", "renumber"])
    seq, prev, digest, at, body = rows[i]
    if how == "edit":
        rows[i] = (seq, prev, digest, at, hashlib.sha256(body + b" ").digest())
    elif how == "delete":
        del rows[i]
    elif how == "swap" and i + 1 < len(rows):
        rows[i], rows[i + 1] = replace_seq(rows[i + 1], seq), replace_seq(rows[i], seq + 1)
    elif how == "backdate":
        rows[i] = (seq, prev, digest, "2025-01-01T00:00:00.000000Z", body)
    elif how == "relink":
        rows[i] = (seq, "0" * 64, digest, at, body)
    elif how == "renumber":
        rows[i] = (seq + 1, prev, digest, at, body)
    return rows


def replace_seq(row, seq):
    return (seq, *row[1:])


def _split(rows, cuts):
    parts, lo = [], 0
    for hi in [*cuts, None]:
        part = [r for r in rows if r[0] > lo and (hi is None or r[0] <= hi)]
        parts.append(part)
        lo = hi or 0
    return parts


def test_stitch_equals_one_walk_for_random_tampers_and_splits():
    rng = random.Random(14)
    chain = _chain(20)
    watch = [9]
    for _ in range(400):
        rows = _tampered(chain, rng) if rng.random() < 0.9 else chain
        cuts = sorted(rng.sample(range(1, 20), rng.randint(1, 4)))
        one = walk_stream(rows, watch=watch, expect_head=f"9:{chain[8][2]}")
        parts = [
            walk_stream(p, watch=watch, expect_head=f"9:{chain[8][2]}", anywhere=True)
            for p in _split(rows, cuts)
        ]
        got = stitch(parts, expect_head=f"9:{chain[8][2]}")
        keep = ("checked", "last_seq", "head", "bad_seq", "hash_at", "seen_expected")
        assert {k: getattr(got, k) for k in keep} == {k: getattr(one, k) for k in keep}, (cuts, rows)


def test_stitch_of_no_rows_is_an_empty_walk():
    got = stitch([walk_stream([], anywhere=True), walk_stream([], anywhere=True)])
    assert (got.checked, got.last_seq, got.head, got.bad_seq) == (0, 0, None, None)
    assert got == walk_stream([])


def test_a_walk_that_stops_early_on_a_long_ledger_still_reports(ledger, ledger_dsn):
    """The walk stops at seq 1 with megabytes of the COPY still to come: leaving the COPY then made psycopg
    send a cancel request that aborted the walk's transaction (the re-read of the bad record failed with
    'current transaction is aborted' instead of a report). The rows after it need not chain for this."""
    fill(ledger, 2)
    tamper(
        ledger_dsn,
        "INSERT INTO drillbook_evidence (seq, recorded_at, record_type, kind, drill, target, verdict, controls,"
        " dag_id, run_id, task_id, map_index, try_number, trigger, result, prev_hash, hash)"
        " SELECT 2 + g, recorded_at, record_type, kind, drill, target, verdict, controls, dag_id,"
        " run_id || g, task_id, map_index, try_number, trigger, result,"
        " encode(sha256(('p' || g)::bytea), 'hex'), encode(sha256(('h' || g)::bytea), 'hex')"
        " FROM drillbook_evidence, generate_series(1, 5000) g WHERE seq = 2",
        "UPDATE drillbook_evidence SET verdict = 'FAIL' WHERE seq = 1",
    )
    for _ in range(3):
        report = ledger.verify(full=True, workers=1)
        assert (report.ok, report.reason, report.first_bad_seq) == (False, "edited", 1)


def test_the_web_verify_button_walks_one_stream(monkeypatch):
    """The api-server's Verify runs one walk at a time and must not fan it out over connections and cores."""
    from drillbook.ledger.records import VerifyReport
    from drillbook.ledger.store import Ledger
    from drillbook.web.ledger_route import verify_with

    seen: dict = {}

    def fake_verify(self, **kwargs):
        seen.update(kwargs)
        return VerifyReport(ok=True, checked=0, message="ok")

    monkeypatch.setattr(Ledger, "verify", fake_verify)
    assert verify_with(lambda: "postgresql://u@h/db")()["ok"]
    assert seen["workers"] == 1


@pytest.mark.parametrize(
    ("statements", "reason", "seq"),
    [
        # a prev_hash of another length (the CHECK dropped first): the row is not of the usual shape
        (
            [
                "ALTER TABLE drillbook_evidence DROP CONSTRAINT drillbook_evidence_prev_hash_check",
                "UPDATE drillbook_evidence SET prev_hash = 'zz\"' WHERE seq = 7",
            ],
            "reordered",
            7,
        ),
        (
            [
                "ALTER TABLE drillbook_evidence DROP CONSTRAINT drillbook_evidence_hash_check",
                "UPDATE drillbook_evidence SET hash = hash || 'ff' WHERE seq = 5",
            ],
            "edited",
            5,
        ),
        # a five-digit year: recorded_at renders with 28 characters
        (
            ["UPDATE drillbook_evidence SET recorded_at = '10000-01-01 00:00:00+00' WHERE seq = 9"],
            "edited",
            9,
        ),
    ],
)
def test_rows_of_an_unusual_shape_are_read_and_reported(ledger, ledger_dsn, statements, reason, seq):
    """The stream unpacks the usual row shape in one step; anything else is read field by field."""
    fill(ledger, N)
    tamper(ledger_dsn, *statements)
    report = _same(ledger)
    assert (report.ok, report.reason, report.first_bad_seq) == (False, reason, seq), report.message
