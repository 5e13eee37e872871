"""A writer role must not steer the seal trigger through its own search_path.

The seal trigger runs with the inserting session's settings. A role with only SELECT + INSERT
still has TEMP on the database (PUBLIC's default), and ``pg_temp`` is searched first for tables:
a temporary table named ``drillbook_evidence`` would otherwise become the "tail" the trigger
reads, letting the writer choose ``seq`` and ``prev_hash`` of the record it appends.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.ledger.conftest import fill

_INSERT = (
    "INSERT INTO public.drillbook_evidence (record_type, kind, drill, target, verdict, controls, dag_id,"
    " run_id, task_id, map_index, try_number, trigger, result, prev_hash, hash, seq, recorded_at)"
    " SELECT record_type, kind, drill, target, 'PASS', controls, dag_id, 'forged', task_id, map_index,"
    " try_number, trigger, result, prev_hash, hash, 0, now() FROM public.drillbook_evidence WHERE seq = 2"
    " RETURNING seq, prev_hash"
)


def test_a_temporary_shadow_table_cannot_choose_seq_or_prev_hash(ledger, writer_dsn):
    head = fill(ledger, 3)[-1]
    with psycopg.connect(writer_dsn, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE drillbook_evidence (seq bigint, hash text)")
        conn.execute("INSERT INTO pg_temp.drillbook_evidence VALUES (41, %s)", ("ab" * 32,))
        seq, prev = conn.execute(_INSERT).fetchone()
    assert (seq, prev) == (4, head.hash)  # the real tail, whatever the session's search_path says
    assert ledger.verify().ok


def test_a_search_path_without_the_ledger_schema_cannot_break_the_seal(ledger, writer_dsn):
    head = fill(ledger, 2)[-1]
    with psycopg.connect(writer_dsn, autocommit=True) as conn:
        conn.execute("SET search_path = pg_catalog")
        seq, prev = conn.execute(_INSERT.replace("seq = 2", "seq = 1")).fetchone()
    assert (seq, prev) == (3, head.hash)
    assert ledger.verify().ok


def test_a_seal_whose_search_path_pin_was_removed_is_reported_by_verify(ledger, ledger_dsn):
    fill(ledger, 2)
    assert ledger.verify().ok
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:  # the owner takes the pin away
        conn.execute("ALTER FUNCTION drillbook_evidence_seal() RESET search_path")
    report = ledger.verify()
    assert (report.ok, report.reason) == (False, "unguarded")
    assert "drillbook_evidence_seal() runs with the inserting session's search_path" in report.message


@pytest.mark.parametrize("ahead", [5, 0], ids=["claims-rows-cut", "claims-rewrite"])
def test_an_unsigned_checkpoint_from_the_writer_is_not_trusted_when_a_key_is_configured(
    ledger, writer_dsn, tmp_path, monkeypatch, ahead
):
    """The writer may INSERT into drillbook_checkpoint (the digest checkpoints as the writer) but holds no key.

    With a signing key configured, an unsigned row it makes up must not become "the newest checkpoint"
    and turn a healthy ledger into a false "records were cut from the end" / "rewritten" alarm.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from drillbook.ledger.checkpoint import CheckpointSettings

    key = Ed25519PrivateKey.generate().private_bytes_raw().hex()
    settings = CheckpointSettings(private_key=key, path=str(tmp_path / "checkpoints.jsonl"))
    head = fill(ledger, 3)[-1]
    ledger.checkpoint(source="test", settings=settings)
    with psycopg.connect(writer_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO drillbook_checkpoint (seq, hash, signed_at, source) VALUES (%s, %s, %s, 'digest')",
            (head.seq + ahead, "cd" * 32, "2099-01-01T00:00:00.000000Z"),
        )
    report = ledger.verify(checkpoints=settings)
    assert report.ok, report.message
    assert "unsigned checkpoint" in " ".join(report.notes) and "ignored" in " ".join(report.notes)
    # without any key the same row is all there is to go by, and it is believed (and says UNSIGNED)
    monkeypatch.delenv("DRILLBOOK_CHECKPOINT_KEY", raising=False)
    unsigned = ledger.verify(checkpoints=CheckpointSettings(private_key=None, path=None))
    assert unsigned.ok is False


def test_a_version_2_ledger_keeps_recording_after_an_upgrade_and_verify_says_to_migrate(fresh_db):
    """Upgrading drillbook must not stop evidence until someone runs `ledger init`: a v2 ledger is still written,
    and verify says what the pending migration leaves open (not "tampering")."""
    from drillbook.ledger import schema
    from drillbook.ledger.store import Ledger
    from tests.ledger.conftest import ctx, make_result

    with psycopg.connect(fresh_db, autocommit=True) as conn:  # a ledger as the previous drillbook left it
        conn.execute(
            f"CREATE TABLE {schema.VERSION_TABLE} (version integer PRIMARY KEY, description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, description, sql in schema.MIGRATIONS[:2]:
            conn.execute(sql)
            conn.execute(f"INSERT INTO {schema.VERSION_TABLE} VALUES (%s, %s)", (version, description))
    with Ledger(fresh_db, spool=None) as ledger:
        assert ledger.record(make_result(), ctx("after-upgrade")).seq == 1
        report = ledger.verify()
        assert report.ok and any("run `drillbook ledger init`" in n for n in report.notes), report.notes
        assert ledger.init_schema() == [
            v for v, _, _ in schema.MIGRATIONS[2:]
        ]  # every later version, 3 first
        assert ledger.record(make_result(), ctx("after-init")).seq == 2
        report = ledger.verify()
        assert report.ok and not any("not pinned yet" in n for n in report.notes)
