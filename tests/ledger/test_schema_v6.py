"""Schema v6: RTO/RPO and their objectives as generated columns, derived on insert, never refusing a record."""

from __future__ import annotations

import hashlib
import json

import psycopg
import pytest

from .conftest import ctx, make_result


def test_columns_carry_the_result_numbers_and_the_chain_still_verifies(ledger, ledger_dsn):
    result = make_result()
    result.measurements.rto_seconds = 41.25
    result.measurements.rpo_seconds = 1830.0
    ledger.record(result, ctx("r1"))
    ledger.record(make_result(fail=True), ctx("r2"))
    with psycopg.connect(ledger_dsn) as conn:
        rows = conn.execute(
            "SELECT rto_seconds, rpo_seconds, rto_objective, rpo_objective FROM drillbook_evidence ORDER BY seq"
        ).fetchall()
    # make_result's objectives are {"rto": 900.0}: the digest's rule reads "rto" when "rto_seconds" is absent
    assert rows[0] == (41.25, 1830.0, 900.0, None)
    assert rows[1][2:] == (900.0, None)
    assert ledger.verify().ok


def test_no_role_can_write_the_columns(ledger_dsn):
    with psycopg.connect(ledger_dsn) as conn, pytest.raises(psycopg.errors.GeneratedAlways):
        conn.execute(
            "INSERT INTO drillbook_evidence (seq, recorded_at, record_type, kind, drill, target, verdict, dag_id, "
            "run_id, task_id, trigger, result, prev_hash, hash, rto_seconds) VALUES (1, now(), 'drill', 'k', 'd', "
            "'t', 'PASS', 'g', 'r', 't', 's', '{}', repeat('0', 64), repeat('1', 64), 5)"
        )


ODD = [
    # (result document as text, expected (rto, rpo, rto_objective, rpo_objective))
    (
        '{"measurements": {"rto_seconds": 1.5e2, "rpo_seconds": -0}, "objectives": {"rto_seconds": 900}}',
        (150.0, 0.0, 900.0, None),
    ),
    (
        '{"measurements": {"rto_seconds": "12", "rpo_seconds": true}, "objectives": {"rto": "15m"}}',
        (None, None, None, None),
    ),
    ('{"measurements": {"rto_seconds": 1e999, "rpo_seconds": 1' + "0" * 400 + "}}", (None, None, None, None)),
    (
        '{"measurements": {"rto_seconds": 1e-999, "rpo_seconds": [1]}, "objectives": [900]}',
        (None, None, None, None),
    ),
    (
        '{"measurements": [1, 2], "objectives": {"rto_seconds": null, "rto": 5, "rpo": 60}}',
        (None, None, None, 60.0),
    ),
    (
        '{"measurements": {"rto_seconds":   7 }, "objectives": {"rto_seconds": {"v": 1}}}',
        (7.0, None, None, None),
    ),
    ("[1, 2, 3]", (None, None, None, None)),
    ('"text"', (None, None, None, None)),
    ("null", (None, None, None, None)),
    ("{}", (None, None, None, None)),
]


def test_odd_results_give_null_and_are_never_refused(ledger_dsn):
    """A result the columns cannot read (a string, an overflowing number, an array) still goes in: NULL."""
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # rows with chosen seq, as bench/ledger.py
        for i, (doc, _want) in enumerate(ODD, start=1):
            digest = hashlib.sha256(str(i).encode()).hexdigest()
            conn.execute(
                "INSERT INTO drillbook_evidence (seq, recorded_at, record_type, kind, drill, target, verdict, "
                "dag_id, run_id, task_id, trigger, result, prev_hash, hash) VALUES (%s, now(), 'drill', 'k', 'd', "
                "'t', 'PASS', 'g', %s, 't', 's', %s::json, %s, %s)",
                (i, f"r{i}", doc, digest, hashlib.sha256(digest.encode()).hexdigest()),
            )
        got = conn.execute(
            "SELECT rto_seconds, rpo_seconds, rto_objective, rpo_objective FROM drillbook_evidence ORDER BY seq"
        ).fetchall()
    assert got == [want for _doc, want in ODD]
    json.loads(ODD[0][0])  # the healthy document is valid JSON, so the first row is a real read


def test_migration_is_idempotent(ledger):
    assert ledger.init_schema() == []
