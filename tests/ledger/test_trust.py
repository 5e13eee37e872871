"""Ledger trust that needs no one's memory: every tamper case of issue 11 item 5, on a real PostgreSQL.

A writer role (SELECT + INSERT) and a database superuser try to backdate, switch the guards off, cut
rows from the end, rewrite the whole chain and strip FAIL rows from an export; a plain
``evidence verify`` (or ``verify --file``) must catch each, and a healthy ledger must stay OK.
"""

from __future__ import annotations

import csv
import json
from datetime import timedelta

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drillbook.cli import ledger_cmds
from drillbook.ledger import schema
from drillbook.ledger.canonical import COLUMNS, canonical_json, record_hash
from drillbook.ledger.checkpoint import CheckpointSettings
from drillbook.ledger.store import Ledger
from tests.ledger.conftest import ctx, fill, make_result, tamper


def _key() -> str:
    return Ed25519PrivateKey.generate().private_bytes_raw().hex()


@pytest.fixture
def signed(tmp_path, monkeypatch) -> CheckpointSettings:
    """A signing key and an outside checkpoint file, through the environment like the CLI reads them."""
    key, path = _key(), tmp_path / "checkpoints.jsonl"
    monkeypatch.setenv("DRILLBOOK_CHECKPOINT_KEY", key)
    monkeypatch.setenv("DRILLBOOK_CHECKPOINT_PATH", str(path))
    return CheckpointSettings(private_key=key, path=str(path))


def _verify_cli(dsn, monkeypatch, capsys, *extra) -> tuple[int, str]:
    monkeypatch.setenv("DRILLBOOK_LEDGER_DSN", dsn)
    code = ledger_cmds.main(["evidence", "verify", *extra])
    return code, capsys.readouterr().out


# -- a healthy ledger stays OK -----------------------------------------------------------------------
def test_a_healthy_checkpointed_ledger_verifies_and_says_what_it_checked(
    ledger, ledger_dsn, signed, monkeypatch, capsys
):
    fill(ledger, 3)
    monkeypatch.setenv("DRILLBOOK_LEDGER_DSN", ledger_dsn)
    assert ledger_cmds.main(["evidence", "checkpoint"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint seq=3" in out and "signed with Ed25519 key" in out and str(signed.path) in out
    fill(ledger, 2, drill="later")  # records after the checkpoint are fine
    code, out = _verify_cli(ledger_dsn, monkeypatch, capsys)
    assert code == 0, out
    assert "compared with checkpoint seq=3" in out and "signature verified with the trusted key" in out
    # incremental: only the 2 records after the trusted checkpoint are re-hashed, and it says so
    assert "all 5 present and enabled" in out and "ledger OK: 2 records" in out and "incremental" in out
    code, out = _verify_cli(ledger_dsn, monkeypatch, capsys, "--full")
    assert code == 0, out
    assert "ledger OK: 5 records, chain intact, head 5:" in out and "full verify (--full)" in out


def test_without_a_key_checkpoints_are_unsigned_and_it_says_so(ledger, ledger_dsn, monkeypatch, capsys):
    fill(ledger, 2)
    monkeypatch.setenv("DRILLBOOK_LEDGER_DSN", ledger_dsn)
    assert ledger_cmds.main(["evidence", "checkpoint"]) == 0
    assert "UNSIGNED: no signing key is configured" in capsys.readouterr().out
    code, out = _verify_cli(ledger_dsn, monkeypatch, capsys)
    assert code == 0 and "UNSIGNED (no signing key was configured" in out
    tamper(ledger_dsn, "DELETE FROM drillbook_evidence WHERE seq = 2")  # even unsigned, a cut tail is seen
    assert _verify_cli(ledger_dsn, monkeypatch, capsys)[0] == 1


# -- a writer appends a backdated PASS --------------------------------------------------------------
def test_a_writer_cannot_backdate_a_record(ledger, writer_dsn):
    fill(ledger, 2)
    backdated = (
        "INSERT INTO drillbook_evidence (seq, recorded_at, record_type, kind, drill, target, verdict, controls,"
        " dag_id, run_id, task_id, map_index, try_number, trigger, result, prev_hash, hash)"
        " SELECT 3, now() - interval '60 days', record_type, kind, drill, target, 'PASS', controls, dag_id,"
        " 'forged', task_id, map_index, try_number, trigger, result, prev_hash, hash"
        " FROM drillbook_evidence WHERE seq = 2 RETURNING seq, recorded_at, now() AS now"
    )
    with psycopg.connect(writer_dsn, autocommit=True) as conn:
        seq, at, now = conn.execute(backdated).fetchone()
    assert seq == 3 and at >= now  # the database stamped its own clock; the 60 days were thrown away
    assert ledger.verify().ok
    with Ledger(writer_dsn, spool=None) as writer:  # the writer itself sees the same verdict
        assert writer.verify().ok


def test_a_backdated_record_with_a_valid_hash_is_caught(ledger, ledger_dsn):
    """A superuser bypasses the seal and appends a PASS 60 days in the past with a correct hash."""
    head = fill(ledger, 3)[-1]
    fields = {c: getattr(head, c) for c in COLUMNS}
    fields.update(
        seq=4,
        run_id="forged",
        prev_hash=head.hash,
        verdict="PASS",
        recorded_at=head.recorded_at - timedelta(days=60),
    )
    text = canonical_json(fields["result"])
    fields["hash"] = record_hash({**fields, "result": text})
    values = [text if c == "result" else fields[c] for c in COLUMNS]
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            f"INSERT INTO drillbook_evidence ({', '.join(COLUMNS)}) VALUES "
            f"({', '.join(['%s'] * len(COLUMNS))})",
            values,
        )
    report = ledger.verify()
    assert (report.ok, report.reason, report.first_bad_seq) == (False, "backdated", 4)
    assert "recorded_at never decreases" in report.message


# -- guards switched off -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        (
            ["ALTER TABLE drillbook_evidence DISABLE TRIGGER drillbook_evidence_no_update_delete"],
            "trigger 'drillbook_evidence_no_update_delete' on drillbook_evidence is DISABLED",
        ),
        (
            ["DROP TRIGGER drillbook_evidence_no_truncate ON drillbook_evidence"],
            "trigger 'drillbook_evidence_no_truncate' on drillbook_evidence is missing (dropped)",
        ),
        (
            ["ALTER TABLE drillbook_evidence DISABLE TRIGGER drillbook_evidence_seal"],
            "trigger 'drillbook_evidence_seal' on drillbook_evidence is DISABLED",
        ),
        (
            ["ALTER TABLE drillbook_checkpoint ENABLE REPLICA TRIGGER drillbook_checkpoint_no_update_delete"],
            "is enabled only in replica mode",
        ),
        (
            [
                "CREATE OR REPLACE FUNCTION drillbook_evidence_refuse_change() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RETURN OLD; END $$"
            ],
            "function drillbook_evidence_refuse_change() behind trigger 'drillbook_evidence_no_update_delete' was replaced",
        ),
        (
            [
                "CREATE OR REPLACE FUNCTION drillbook_evidence_seal() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RETURN NEW; END $$"
            ],
            "function drillbook_evidence_seal() behind trigger 'drillbook_evidence_seal' was replaced",
        ),
    ],
)
def test_guards_disabled_dropped_or_replaced_are_reported(
    ledger, ledger_dsn, monkeypatch, capsys, statements, expected
):
    fill(ledger, 2)
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)
    report = ledger.verify()
    assert (report.ok, report.reason) == (False, "unguarded")
    assert expected in report.message
    code, out = _verify_cli(ledger_dsn, monkeypatch, capsys)
    assert code == 1 and "BROKEN (unguarded)" in out and expected in out


# -- rows cut from the end after a checkpoint --------------------------------------------------------
def test_rows_deleted_after_a_checkpoint_are_caught_by_a_plain_verify(
    ledger, ledger_dsn, signed, monkeypatch, capsys
):
    fill(ledger, 5)
    ledger.checkpoint(source="test", settings=signed)
    tamper(ledger_dsn, "DELETE FROM drillbook_evidence WHERE seq >= 4")
    report = ledger.verify(checkpoints=signed)
    assert (report.ok, report.reason, report.first_bad_seq) == (False, "truncated", 4)
    assert "2 rows up to checkpoint seq 5 are missing (seq=4..5)" in report.message
    code, out = _verify_cli(ledger_dsn, monkeypatch, capsys)
    assert code == 1 and "BROKEN (truncated)" in out and "records were cut from the end" in out
    assert "rewritten" not in out


def test_deleting_the_checkpoints_too_is_caught_by_the_outside_copy(ledger, ledger_dsn, signed):
    fill(ledger, 4)
    ledger.checkpoint(source="test", settings=signed)
    tamper(ledger_dsn, "DELETE FROM drillbook_evidence WHERE seq = 4", "DELETE FROM drillbook_checkpoint")
    report = ledger.verify(checkpoints=signed)
    assert (report.ok, report.reason) == (False, "truncated")
    assert ledger.verify(checkpoints=CheckpointSettings()).ok  # without the outside copy it could not be seen


# -- the whole chain rewritten -----------------------------------------------------------------------
def _rewrite_chain(ledger: Ledger, dsn: str, *, verdict: str = "PASS") -> None:
    """What a superuser can do: recompute every hash after turning every FAIL into a PASS."""
    rows = [dict(r.__dict__) for r in ledger.query()]
    prev = "0" * 64
    statements = []
    for row in rows:
        row["verdict"], row["prev_hash"] = verdict, prev
        row["hash"] = record_hash(row)
        prev = row["hash"]
        statements.append(
            f"UPDATE drillbook_evidence SET verdict = '{verdict}', prev_hash = 'tmp{row['seq']}', "
            f"hash = '{row['hash']}' WHERE seq = {row['seq']}"
        )
    statements += [
        f"UPDATE drillbook_evidence SET prev_hash = '{r['prev_hash']}' WHERE seq = {r['seq']}" for r in rows
    ]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "ALTER TABLE drillbook_evidence DROP CONSTRAINT IF EXISTS drillbook_evidence_prev_hash_check"
        )
        for sql in statements:
            conn.execute(sql)


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoint(
    ledger, ledger_dsn, signed, monkeypatch, capsys
):
    fill(ledger, 2)
    fill(ledger, 2, drill="bad", fail=True)
    ledger.checkpoint(source="test", settings=signed)
    _rewrite_chain(ledger, ledger_dsn)
    report = ledger.verify(checkpoints=CheckpointSettings())  # the chain alone is consistent again
    assert report.ok is False  # ...but the checkpoint in the database still holds the old head
    report = ledger.verify(checkpoints=signed)
    assert (report.ok, report.reason) == (False, "rewritten")
    assert "record 4 no longer has the hash the checkpoint signed" in report.message
    assert "the chain was rewritten" in report.message
    code, out = _verify_cli(ledger_dsn, monkeypatch, capsys, "--expect-head", f"4:{'0' * 12}")
    assert code == 1 and "deleted from the end" not in out and "rewritten" in out


def test_a_rewriter_who_signs_new_checkpoints_with_another_key_is_caught(ledger, ledger_dsn, signed):
    fill(ledger, 3, fail=True)
    ledger.checkpoint(source="test", settings=signed)
    _rewrite_chain(ledger, ledger_dsn)
    tamper(ledger_dsn, "DELETE FROM drillbook_checkpoint")
    forged = CheckpointSettings(private_key=_key())
    ledger.checkpoint(source="forger", settings=forged)
    trusted_only = CheckpointSettings(public_key=signed.trusted_public_hex())
    report = ledger.verify(checkpoints=trusted_only)
    assert (report.ok, report.reason) == (False, "checkpoint")
    assert "not by the trusted key" in report.message
    tamper(
        ledger_dsn, "UPDATE drillbook_checkpoint SET seq = seq + 1"
    )  # an edited checkpoint breaks its signature
    report = ledger.verify(checkpoints=CheckpointSettings())
    assert (report.ok, report.reason) == (False, "checkpoint") and "forged or edited" in report.message


# -- an export with the FAIL rows removed ----------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_an_export_with_the_fail_rows_removed_does_not_verify(
    ledger, ledger_dsn, tmp_path, monkeypatch, capsys, fmt
):
    fill(ledger, 2)
    ledger.record(make_result(drill="other", controls=("DORA:Art.12",)), ctx("dora"))
    fill(ledger, 2, drill="bad", fail=True)
    fill(ledger, 1, drill="last")
    out = tmp_path / f"soc2.{fmt}"
    monkeypatch.setenv("DRILLBOOK_LEDGER_DSN", ledger_dsn)
    assert (
        ledger_cmds.main(["evidence", "export", "--control", "SOC2:A1.2", "--format", fmt, "-o", str(out)])
        == 0
    )
    assert _verify_cli(ledger_dsn, monkeypatch, capsys, "--file", str(out))[0] == 0
    if fmt == "csv":
        rows = list(csv.DictReader(out.open(newline="")))
        kept = [r for r in rows if r["verdict"] != "FAIL"]
        with out.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(kept)
    else:
        docs = [d for d in json.loads(out.read_text()) if d.get("verdict") != "FAIL"]
        out.write_text("[\n" + ",\n".join(json.dumps(d, ensure_ascii=False) for d in docs) + "\n]\n")
    code, text = _verify_cli(ledger_dsn, monkeypatch, capsys, "--file", str(out))
    assert code == 1 and "BROKEN (deleted) at seq=4" in text and "record seq=4..5 is missing" in text


def test_a_forged_backdated_row_in_an_export_is_caught(ledger, tmp_path, monkeypatch, capsys, ledger_dsn):
    fill(ledger, 3)
    out = tmp_path / "all.json"
    monkeypatch.setenv("DRILLBOOK_LEDGER_DSN", ledger_dsn)
    assert ledger_cmds.main(["evidence", "export", "--format", "json", "-o", str(out)]) == 0
    docs = json.loads(out.read_text())
    docs[2]["recorded_at"] = "2000-01-01T00:00:00.000000Z"
    docs[2]["hash"] = record_hash(docs[2])
    out.write_text("[\n" + ",\n".join(json.dumps(d, ensure_ascii=False) for d in docs) + "\n]\n")
    code, text = _verify_cli(ledger_dsn, monkeypatch, capsys, "--file", str(out))
    assert code == 1 and "BROKEN (backdated) at seq=3" in text


# -- migration in place, and "could not verify" --------------------------------------------------------
def test_a_version_1_ledger_migrates_in_place_and_its_rows_keep_verifying(fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as conn:  # a ledger as drillbook 1 left it
        conn.execute(
            f"CREATE TABLE {schema.VERSION_TABLE} (version integer PRIMARY KEY, description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(schema.MIGRATIONS[0][2])
        conn.execute(f"INSERT INTO {schema.VERSION_TABLE} (version, description) VALUES (1, 'v1')")
        prev = "0" * 64
        for seq in (1, 2):
            fields = {
                "seq": seq,
                "recorded_at": conn.execute("SELECT clock_timestamp()").fetchone()[0],
                "record_type": "drill",
                "kind": "backup_restore",
                "drill": "old",
                "target": "t",
                "verdict": "PASS",
                "controls": ["SOC2:A1.2"],
                "dag_id": "d",
                "run_id": f"r{seq}",
                "task_id": "t",
                "map_index": -1,
                "try_number": 1,
                "trigger": "scheduled",
                "result": canonical_json({"old": seq}),
                "prev_hash": prev,
            }
            fields["hash"] = prev = record_hash(fields)
            conn.execute(
                f"INSERT INTO drillbook_evidence ({', '.join(COLUMNS)}) VALUES "
                f"({', '.join(['%s'] * len(COLUMNS))})",
                [fields[c] for c in COLUMNS],
            )
    with Ledger(fresh_db, spool=None) as ledger:
        assert ledger.init_schema() == list(range(2, schema.LATEST_VERSION + 1))
        assert ledger.init_schema() == []
        assert ledger.verify().ok
        assert ledger.record(make_result(), ctx("new")).seq == 3
        report = ledger.verify()
        assert report.ok and report.checked == 3


def test_an_unreachable_ledger_exits_2_not_1(monkeypatch, capsys):
    monkeypatch.setenv(
        "DRILLBOOK_LEDGER_DSN", "postgresql://auditor:canary-pw-77@127.0.0.1:1/ledger?connect_timeout=2"
    )
    assert ledger_cmds.main(["evidence", "verify"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect to the evidence ledger" in err and "canary-pw-77" not in err


def test_an_export_with_its_tail_cut_is_caught_against_the_outside_checkpoint(
    ledger, ledger_dsn, signed, tmp_path, monkeypatch, capsys
):
    fill(ledger, 3)
    fill(ledger, 1, drill="bad", fail=True)
    ledger.checkpoint(source="test", settings=signed)
    out = tmp_path / "all.json"
    monkeypatch.setenv("DRILLBOOK_LEDGER_DSN", ledger_dsn)
    assert ledger_cmds.main(["evidence", "export", "--format", "json", "-o", str(out)]) == 0
    assert _verify_cli(ledger_dsn, monkeypatch, capsys, "--file", str(out))[0] == 0
    docs = json.loads(out.read_text())[:-1]  # the last record (the FAIL) cut from the file
    out.write_text("[\n" + ",\n".join(json.dumps(d, ensure_ascii=False) for d in docs) + "\n]\n")
    code, text = _verify_cli(ledger_dsn, monkeypatch, capsys, "--file", str(out))
    assert code == 1 and "BROKEN (truncated)" in text and "1 row up to checkpoint seq 4 is missing" in text
