"""The database refuses changes; a superuser who bypasses the guard is caught by verify."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from drillbook.cli import ledger_cmds
from tests.ledger.conftest import fill, tamper

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("sql", "op"),
    [
        ("UPDATE drillbook_evidence SET verdict = 'PASS' WHERE seq = 2", "UPDATE of record seq=2"),
        ("DELETE FROM drillbook_evidence WHERE seq = 2", "DELETE of record seq=2"),
        ("TRUNCATE drillbook_evidence", "TRUNCATE of drillbook_evidence"),
    ],
)
def test_the_database_refuses_update_delete_and_truncate(ledger, ledger_dsn, sql, op):
    fill(ledger, 3, fail=True)
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"append-only: {op} refused"):
            conn.execute(sql)
    assert ledger.count() == 3 and ledger.verify().ok


def _verify_cli(dsn: str) -> subprocess.CompletedProcess:
    """The real ``drillbook`` entry point in a child process, DSN from the environment."""
    env = {**os.environ, "DRILLBOOK_LEDGER_DSN": dsn, "PYTHONPATH": str(REPO / "plugins")}
    code = "import sys; from drillbook.cli import main; sys.exit(main(['evidence', 'verify']))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("how", ["replica", "disable_trigger"])
def test_an_edited_record_is_named(ledger, ledger_dsn, how):
    records = fill(ledger, 5, fail=True)
    tamper(
        ledger_dsn,
        "UPDATE drillbook_evidence SET verdict = 'PASS', "
        'result = replace(result::text, \'"verdict":"FAIL"\', \'"verdict":"PASS"\')::json WHERE seq = 3',
        how=how,
    )
    report = ledger.verify()
    assert (report.ok, report.reason, report.first_bad_seq, report.checked) == (False, "edited", 3, 2)
    assert (
        "seq=3" in report.message
        and records[2].run_id in report.message
        and "orders_nightly" in report.message
    )
    done = _verify_cli(ledger_dsn)
    assert done.returncode == 1, done.stderr
    assert "ledger BROKEN (edited) at seq=3" in done.stdout and records[2].run_id in done.stdout


def test_an_edited_timestamp_is_caught(ledger, ledger_dsn):
    fill(ledger, 3)
    tamper(
        ledger_dsn, "UPDATE drillbook_evidence SET recorded_at = recorded_at - interval '1 day' WHERE seq = 2"
    )
    report = ledger.verify()
    assert (report.reason, report.first_bad_seq) == ("edited", 2)


def test_a_deleted_record_is_named(ledger, ledger_dsn, capsys, monkeypatch):
    fill(ledger, 5)
    tamper(ledger_dsn, "DELETE FROM drillbook_evidence WHERE seq = 3")
    report = ledger.verify()
    assert (report.ok, report.reason, report.first_bad_seq) == (False, "deleted", 3)
    assert "record seq=3 is missing" in report.message and "seq=4" in report.message
    monkeypatch.setenv("DRILLBOOK_LEDGER_DSN", ledger_dsn)
    assert ledger_cmds.main(["evidence", "verify"]) == 1
    assert "BROKEN (deleted) at seq=3" in capsys.readouterr().out


def test_deleting_the_first_records_is_caught(ledger, ledger_dsn):
    fill(ledger, 4)
    tamper(ledger_dsn, "DELETE FROM drillbook_evidence WHERE seq IN (1, 2)")
    report = ledger.verify()
    assert (report.reason, report.first_bad_seq) == ("deleted", 1)
    assert "seq=1..2 is missing" in report.message


def test_reordered_records_are_named(ledger, ledger_dsn, capsys, monkeypatch):
    fill(ledger, 5)
    tamper(
        ledger_dsn,
        "UPDATE drillbook_evidence SET seq = 1000 WHERE seq = 3",
        "UPDATE drillbook_evidence SET seq = 3 WHERE seq = 4",
        "UPDATE drillbook_evidence SET seq = 4 WHERE seq = 1000",
    )
    report = ledger.verify()
    assert (report.ok, report.reason, report.first_bad_seq) == (False, "reordered", 3)
    assert "does not link to seq=2" in report.message
    monkeypatch.setenv("DRILLBOOK_LEDGER_DSN", ledger_dsn)
    assert ledger_cmds.main(["evidence", "verify"]) == 1
    assert "BROKEN (reordered) at seq=3" in capsys.readouterr().out


def test_a_deleted_record_with_the_rest_renumbered_is_caught(ledger, ledger_dsn):
    fill(ledger, 5)
    tamper(
        ledger_dsn,
        "DELETE FROM drillbook_evidence WHERE seq = 3",
        "UPDATE drillbook_evidence SET seq = seq - 1 WHERE seq > 3",
    )
    report = ledger.verify()
    assert (report.reason, report.first_bad_seq) == ("reordered", 3)


def test_an_edit_that_also_rewrites_the_hash_breaks_the_next_link(ledger, ledger_dsn):
    """A tamperer who recomputes the edited row's hash is caught at the next record."""
    from drillbook.ledger.canonical import record_hash

    fill(ledger, 4)
    row = dict(ledger.get(2).__dict__)
    row["verdict"] = "FAIL"
    forged = record_hash(row)
    tamper(ledger_dsn, f"UPDATE drillbook_evidence SET verdict = 'FAIL', hash = '{forged}' WHERE seq = 2")
    report = ledger.verify()
    assert (report.reason, report.first_bad_seq) == ("reordered", 3)
    assert "seq=2" in report.message


def test_an_intact_ledger_verifies_with_exit_0(ledger, ledger_dsn, capsys, monkeypatch):
    records = fill(ledger, 3)
    monkeypatch.setenv("DRILLBOOK_LEDGER_DSN", ledger_dsn)
    assert ledger_cmds.main(["evidence", "verify"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"ledger OK: 3 records, chain intact, head 3:{records[-1].hash}"
    assert "append-only and seal triggers: all 5 present and enabled" in out[-2]


def test_an_empty_ledger_verifies(ledger):
    report = ledger.verify()
    assert report.ok and report.checked == 0


def test_any_byte_changed_in_the_stored_result_is_an_edit(ledger, ledger_dsn):
    """The stored JSON text is what was hashed: even a formatting-only rewrite is caught."""
    fill(ledger, 2)
    tamper(ledger_dsn, "UPDATE drillbook_evidence SET result = (result::jsonb)::text::json WHERE seq = 2")
    assert (ledger.verify().reason, ledger.verify().first_bad_seq) == ("edited", 2)


def test_a_least_privilege_writer_can_append_but_never_change(ledger, ledger_dsn, pg):
    """Writers need only SELECT and INSERT (the chain lock is an advisory lock, not LOCK TABLE)."""
    import uuid

    from psycopg.conninfo import make_conninfo

    from drillbook.ledger.store import Ledger
    from tests.ledger.conftest import ctx, make_result

    role = f"drillbook_writer_{uuid.uuid4().hex[:8]}"
    dbname = psycopg.conninfo.conninfo_to_dict(ledger_dsn)["dbname"]
    with psycopg.connect(ledger_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'writer-pw-123'")
        admin.execute(f'GRANT CONNECT ON DATABASE "{dbname}" TO {role}')
        admin.execute(f"GRANT SELECT, INSERT ON drillbook_evidence, drillbook_checkpoint TO {role}")
        admin.execute(f"GRANT SELECT ON drillbook_schema_version TO {role}")
    writer_dsn = make_conninfo(ledger_dsn, user=role, password="writer-pw-123")
    try:
        fill(ledger, 1)
        with Ledger(writer_dsn) as writer:
            assert writer.record(make_result(), ctx("by_writer")).seq == 2
            assert writer.verify().ok
        with psycopg.connect(writer_dsn, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("UPDATE drillbook_evidence SET verdict = 'PASS'")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("ALTER TABLE drillbook_evidence DISABLE TRIGGER USER")
    finally:
        with psycopg.connect(ledger_dsn, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
        pg.execute("postgres", f"DROP ROLE IF EXISTS {role}")


def test_records_deleted_from_the_end_are_caught_with_an_earlier_head(
    ledger, ledger_dsn, capsys, monkeypatch
):
    records = fill(ledger, 5)
    earlier_head = ledger.verify().head_hash
    assert ledger.verify(expect_head=records[2].hash[:12]).ok  # an older head is still in the chain
    tamper(ledger_dsn, "DELETE FROM drillbook_evidence WHERE seq >= 4")
    assert ledger.verify().ok  # the chain alone cannot see a cut tail
    report = ledger.verify(expect_head=earlier_head)  # a bare hash: gone, but it cannot say how
    assert (report.ok, report.reason, report.first_bad_seq) == (False, "head_missing", 4)
    assert earlier_head[:12] in report.message and "deleted from the end" not in report.message
    report = ledger.verify(expect_head=f"5:{earlier_head}")  # SEQ:HASH says which
    assert (report.ok, report.reason, report.first_bad_seq) == (False, "truncated", 4)
    assert "2 rows up to the expected head seq 5 are missing" in report.message
    monkeypatch.setenv("DRILLBOOK_LEDGER_DSN", ledger_dsn)
    assert ledger_cmds.main(["evidence", "verify", "--expect-head", f"5:{earlier_head[:16]}"]) == 1
    assert "BROKEN (truncated) at seq=4" in capsys.readouterr().out
    assert ledger_cmds.main(["evidence", "verify", "--expect-head", "xyz"]) == 2
