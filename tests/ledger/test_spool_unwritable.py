"""Ledger down AND spool unwritable: the result is not kept anywhere, and drillbook must say exactly that.

Principle 3 (nothing lost) cannot hold when both the ledger and the local spool refuse a write; then
the loss must be loud and named: exit 2, one line naming the ledger, the spool path and the drill,
saying the record was NOT kept, and never "could not run" for a drill that did run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drillbook.errors import EvidenceSpooled, LedgerUnavailable
from drillbook.ledger.store import Ledger
from tests.ledger.conftest import ctx, make_result

DOWN = "postgresql://postgres@127.0.0.1:1/ledger"  # nothing listens on port 1


def _unwritable(tmp_path: Path) -> Path:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the spool's directory should be\n")
    return blocker / "evidence-spool.jsonl"  # fails even for root (ENOTDIR)


def test_ledger_down_and_spool_unwritable_raises_a_named_loss_not_spooled(tmp_path):
    spool = _unwritable(tmp_path)
    with Ledger(DOWN, spool=str(spool)) as ledger, pytest.raises(LedgerUnavailable) as caught:
        ledger.record(make_result(fail=True), ctx("lost-run"))
    assert not isinstance(caught.value, EvidenceSpooled)
    message = str(caught.value)
    assert "NOT kept" in message and str(spool) in message and "'orders_nightly'" in message
    assert "127.0.0.1:1/ledger" in message


def test_the_cli_exits_2_with_the_loss_named_when_ledger_and_spool_both_fail(tmp_path):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "spool.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=400))
        .sign(key, hashes.SHA256())
    )
    pem = tmp_path / "cert.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    spool = _unwritable(tmp_path)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DRILLBOOK_LEDGER_DSN": DOWN,
        "DRILLBOOK_SPOOL": str(spool),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "drillbook", "run", "certificates", "--file", str(pem), "--no-notify"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "could not run" not in proc.stderr
    assert "NOT kept" in proc.stderr and str(spool) in proc.stderr


def test_flush_names_entries_owed_to_another_spelling_of_a_ledger_and_does_not_say_done(
    ledger_dsn, tmp_path, monkeypatch, capsys
):
    """Airflow's connection says ``localhost``, the shell says ``127.0.0.1`` or a socket: the spool keys entries by
    that spelling, so a flush with the other spelling replays nothing. It must say so, not "0 left" and exit 0."""
    from drillbook.cli import ledger_cmds

    spool = tmp_path / "evidence-spool.jsonl"
    other_spelling = "host=localhost port=1 dbname=ledger user=postgres connect_timeout=2"
    with Ledger(other_spelling, spool=str(spool)) as down, pytest.raises(EvidenceSpooled):
        down.record(make_result(fail=True), ctx("spelt-otherwise"))
    monkeypatch.setenv("DRILLBOOK_LEDGER_DSN", ledger_dsn)
    code = ledger_cmds.main(["ledger", "flush", "--spool", str(spool)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 2, text
    assert "1 record(s) owed to another ledger" in text and "localhost:1/ledger" in text


@pytest.mark.parametrize("setting", ["default_transaction_read_only", "statement_timeout"])
def test_a_ledger_that_refuses_writes_for_a_while_spools_the_record(ledger_dsn, tmp_path, setting):
    """A ledger failed over to a standby (read-only), or too busy to answer in time, is down for writing:
    the record must wait in the spool like for a stopped server, not vanish with a LedgerError."""
    import psycopg

    dbname = psycopg.conninfo.conninfo_to_dict(ledger_dsn)["dbname"]
    value = "on" if setting == "default_transaction_read_only" else "1ms"
    spool = tmp_path / "evidence-spool.jsonl"
    with psycopg.connect(ledger_dsn, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE \"{dbname}\" SET {setting} = '{value}'")
    try:
        with Ledger(ledger_dsn, spool=str(spool)) as ledger:
            if setting == "statement_timeout":  # make the insert slow enough to time out: hold the chain lock
                with psycopg.connect(ledger_dsn, autocommit=True, options="-c statement_timeout=0") as holder:
                    holder.execute("SELECT pg_advisory_lock(%s)", (0x6472696C6C636E,))
                    with pytest.raises(EvidenceSpooled):
                        ledger.record(make_result(fail=True), ctx("busy"))
            else:
                with pytest.raises(EvidenceSpooled):
                    ledger.record(make_result(fail=True), ctx("standby"))
    finally:
        with psycopg.connect(
            ledger_dsn, autocommit=True, options="-c default_transaction_read_only=off"
        ) as admin:
            admin.execute(f'ALTER DATABASE "{dbname}" RESET {setting}')
    with Ledger(ledger_dsn, spool=str(spool)) as ledger:
        assert [r.verdict for r in ledger.flush_spool().records] == ["FAIL"]
        assert ledger.verify().ok
