"""Incremental verification (issue 14): walk only the records after the newest trusted signed checkpoint.

What it proves and what it does not, each with a test that turns it red: a change after the checkpoint is
found; a change before it is NOT found by the incremental walk (by design, documented) and IS found by
``--full``; rows cut from the end (checkpoint ahead of the head) are found; a forged, foreign-key or unsigned
checkpoint is never a starting point; without a trusted checkpoint the walk is full and says so.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drillbook.cli import ledger_cmds
from drillbook.ledger.checkpoint import CheckpointSettings
from drillbook.ledger.verify import walk_stream
from tests.ledger.conftest import fill, tamper


def _key() -> str:
    return Ed25519PrivateKey.generate().private_bytes_raw().hex()


@pytest.fixture
def signed(tmp_path) -> CheckpointSettings:
    return CheckpointSettings(private_key=_key(), path=str(tmp_path / "checkpoints.jsonl"))


def _checkpointed(ledger, signed, before: int = 4, after: int = 3) -> None:
    fill(ledger, before)
    ledger.checkpoint(source="test", settings=signed)
    fill(ledger, after, drill="later")


def test_a_healthy_ledger_verifies_incrementally_from_the_trusted_checkpoint(ledger, signed):
    _checkpointed(ledger, signed)
    report = ledger.verify(checkpoints=signed)
    assert report.ok, report.message
    assert (report.checked, report.since_seq, report.head_seq) == (3, 4, 7)
    assert any("incremental verify" in n and "seq=4" in n for n in report.notes)
    full = ledger.verify(checkpoints=signed, full=True)
    assert full.ok and (full.checked, full.since_seq) == (7, None)
    assert any("full verify (--full)" in n for n in full.notes)


def test_an_edit_after_the_checkpoint_is_found_incrementally(ledger, ledger_dsn, signed):
    _checkpointed(ledger, signed)
    tamper(ledger_dsn, "UPDATE drillbook_evidence SET verdict = 'FAIL' WHERE seq = 6")
    report = ledger.verify(checkpoints=signed)
    assert (report.ok, report.reason, report.first_bad_seq) == (False, "edited", 6)
    assert "seq=6 (drill 'later'" in report.message and report.checked == 1


def test_an_edit_before_the_checkpoint_is_not_seen_incrementally_but_full_finds_it(
    ledger, ledger_dsn, signed
):
    _checkpointed(ledger, signed)
    tamper(ledger_dsn, "UPDATE drillbook_evidence SET verdict = 'FAIL' WHERE seq = 2")
    report = ledger.verify(checkpoints=signed)
    assert report.ok and report.since_seq == 4  # documented: records up to the checkpoint are not re-hashed
    full = ledger.verify(checkpoints=signed, full=True)
    assert (full.ok, full.reason, full.first_bad_seq) == (False, "edited", 2)


def test_the_checkpointed_record_rewritten_is_found(ledger, ledger_dsn, signed):
    _checkpointed(ledger, signed)
    tamper(ledger_dsn, "UPDATE drillbook_evidence SET hash = repeat('a', 64) WHERE seq = 4")
    report = ledger.verify(checkpoints=signed)
    assert (report.ok, report.reason, report.first_bad_seq) == (False, "rewritten", 4)


def test_the_checkpointed_record_deleted_is_found(ledger, ledger_dsn, signed):
    _checkpointed(ledger, signed)
    tamper(ledger_dsn, "DELETE FROM drillbook_evidence WHERE seq = 4")
    report = ledger.verify(checkpoints=signed)
    assert (report.ok, report.reason, report.first_bad_seq) == (False, "deleted", 4)


def test_a_record_deleted_after_the_checkpoint_is_found(ledger, ledger_dsn, signed):
    _checkpointed(ledger, signed)
    tamper(ledger_dsn, "DELETE FROM drillbook_evidence WHERE seq = 5")
    report = ledger.verify(checkpoints=signed)
    assert (report.ok, report.reason, report.first_bad_seq) == (False, "deleted", 5)
    assert "record seq=5 is missing" in report.message


def test_rows_cut_from_the_end_behind_the_checkpoint_are_found(ledger, ledger_dsn, signed):
    _checkpointed(ledger, signed, before=6, after=0)
    tamper(ledger_dsn, "DELETE FROM drillbook_evidence WHERE seq >= 5")
    report = ledger.verify(checkpoints=signed)
    assert (report.ok, report.reason, report.first_bad_seq) == (False, "truncated", 5)
    assert "2 rows up to checkpoint seq 6 are missing (seq=5..6)" in report.message


def test_a_newer_checkpoint_signed_by_another_key_is_not_trusted(ledger, ledger_dsn, signed):
    _checkpointed(ledger, signed)
    ledger.checkpoint(source="forger", settings=CheckpointSettings(private_key=_key()))
    report = ledger.verify(checkpoints=signed)
    assert (report.ok, report.reason) == (False, "checkpoint") and "not by the trusted key" in report.message


def test_an_edited_checkpoint_is_not_trusted(ledger, ledger_dsn, signed):
    _checkpointed(ledger, signed)
    tamper(ledger_dsn, "UPDATE drillbook_checkpoint SET seq = 6")  # move the start past an edit at seq 5
    report = ledger.verify(checkpoints=signed)
    assert (report.ok, report.reason) == (False, "checkpoint") and "forged or edited" in report.message


def test_an_unsigned_checkpoint_is_never_a_starting_point(ledger, ledger_dsn, signed):
    _checkpointed(ledger, signed)
    # the writer role may insert checkpoint rows: an unsigned one at the head must not hide seq 5..7
    ledger.checkpoint(source="writer", settings=CheckpointSettings())
    tamper(ledger_dsn, "UPDATE drillbook_evidence SET verdict = 'FAIL' WHERE seq = 5")
    trusted = CheckpointSettings(public_key=signed.trusted_public_hex())
    report = ledger.verify(checkpoints=trusted)
    assert report.since_seq == 4 and (report.ok, report.reason, report.first_bad_seq) == (False, "edited", 5)


def test_without_a_trusted_key_the_walk_is_full_and_says_so(ledger, ledger_dsn, monkeypatch, capsys):
    fill(ledger, 3)
    ledger.checkpoint(source="test", settings=CheckpointSettings())
    tamper(ledger_dsn, "UPDATE drillbook_evidence SET verdict = 'FAIL' WHERE seq = 1")
    report = ledger.verify(checkpoints=CheckpointSettings())
    assert (report.ok, report.reason, report.first_bad_seq, report.since_seq) == (False, "edited", 1, None)
    monkeypatch.delenv("DRILLBOOK_CHECKPOINT_KEY", raising=False)
    monkeypatch.delenv("DRILLBOOK_CHECKPOINT_PUBLIC_KEY", raising=False)
    monkeypatch.setenv("DRILLBOOK_LEDGER_DSN", ledger_dsn)
    assert ledger_cmds.main(["evidence", "verify"]) == 1
    out = capsys.readouterr().out
    assert "full verify: no trusted public key" in out and "BROKEN (edited) at seq=1" in out


def test_the_cli_says_incremental_and_full_verifies_everything(
    ledger, ledger_dsn, signed, monkeypatch, capsys
):
    _checkpointed(ledger, signed)
    monkeypatch.setenv("DRILLBOOK_LEDGER_DSN", ledger_dsn)
    monkeypatch.setenv("DRILLBOOK_CHECKPOINT_KEY", signed.private_key or "")
    monkeypatch.setenv("DRILLBOOK_CHECKPOINT_PATH", signed.path or "")
    assert ledger_cmds.main(["evidence", "verify"]) == 0
    out = capsys.readouterr().out
    assert "ledger OK: 3 records, chain intact after the trusted signed checkpoint seq=4 (incremental" in out
    assert ledger_cmds.main(["evidence", "verify", "--full"]) == 0
    assert "ledger OK: 7 records, chain intact, head 7:" in capsys.readouterr().out


def test_awkward_characters_hash_the_same_in_the_stream(ledger, ledger_dsn, signed):
    """The streamed bytes are PostgreSQL's rendering of the canonical text: non-ASCII, quotes, backslashes,
    control characters and newlines in every column must hash as the seal and Python hashed them."""
    from tests.ledger.conftest import ctx, make_result

    result = make_result(drill='naïve "quoted" \\ back\tslash\nnew ✓ 𝄞')
    ledger.record(result, ctx("scheduled__ü\u2028\x01"))
    report = ledger.verify(checkpoints=signed, full=True)
    assert report.ok and report.checked == 1, report.message


AWKWARD = 'naïve "q" \\ b\tt\nn ✓ 𝄞 \x01 \u2028 </script> \\u0041'


def _awkward_records(ledger) -> None:
    """Awkward characters in every text column the canonical text holds, and an empty controls array."""
    from tests.ledger.conftest import ctx, make_result

    ledger.record(
        make_result(drill=AWKWARD, kind="certificates", controls=(AWKWARD, "SOC2:A1.2"), target=AWKWARD),
        ctx(f"scheduled__{AWKWARD}", task=f"t{AWKWARD}", dag=f"dr_{AWKWARD}", map_index=3, try_number=2),
    )
    ledger.record(make_result(controls=()), ctx("manual__empty-controls"))


def _streamed(conn) -> list[tuple[bytes, bytes]]:
    """(UTF-8 text the walk builds, digest the walk's COPY streams) of every record, in seq order."""
    from drillbook.ledger.chainstream import STREAM, TEXT

    select = STREAM.format(table="drillbook_evidence", after=0, upto="")
    select = select.removeprefix("COPY (").removesuffix(") TO STDOUT (FORMAT binary)")
    digests = [bytes(row[4]) for row in conn.execute(select)]
    texts = [
        bytes(t)
        for (t,) in conn.execute(
            f"SELECT convert_to({TEXT}, 'UTF8') FROM drillbook_evidence r ORDER BY r.seq"
        )
    ]
    return list(zip(texts, digests, strict=True))


def _sealed(conn) -> list[bytes]:
    from drillbook.ledger.seal import TEXT_EXPRESSION

    return [
        bytes(text)
        for (text,) in conn.execute(
            f"SELECT convert_to(r.prev_hash || ({TEXT_EXPRESSION}), 'UTF8') FROM drillbook_evidence r ORDER BY seq"
        )
    ]


def test_streamed_text_is_byte_equal_to_the_seals_expression(ledger, ledger_dsn):
    """verify builds each record's text unescaped where nothing needs escaping, else by the seal's expression;
    the seal hashed ``seal.TEXT_EXPRESSION``. They must be the same bytes for every record, however awkward,
    and the digest the walk streams must be the sha256 of exactly those bytes (hashlib's, not the server's)."""
    import psycopg

    _awkward_records(ledger)
    fill(ledger, 2)
    with psycopg.connect(ledger_dsn) as conn:
        streamed, sealed = _streamed(conn), _sealed(conn)
    assert len(streamed) == len(sealed) == 4
    for seq, ((text, digest), expected) in enumerate(zip(streamed, sealed, strict=True), 1):
        assert text == expected, seq
        assert digest == hashlib.sha256(expected).digest(), seq


_TEXT_COLUMNS = (
    "dag_id",
    "drill",
    "kind",
    "record_type",
    "run_id",
    "target",
    "task_id",
    "trigger",
    "verdict",
)


@pytest.mark.parametrize("column", _TEXT_COLUMNS)
@pytest.mark.parametrize("code", [34, 92, 10, 31, 1], ids=["quote", "backslash", "newline", "us", "soh"])
def test_each_escaping_character_in_each_text_column_takes_the_escaped_branch_and_still_verifies(
    ledger, ledger_dsn, signed, column, code
):
    """The walk writes a record unescaped unless one of its text columns holds a character JSON escapes; then
    it renders it with the seal's expression. One such character in any one column must switch the branch:
    the record is resealed here exactly as the seal hashes it, so the unescaped text would not match and a
    healthy ledger would fail. A later edit of that record is still found."""
    import psycopg

    from drillbook.ledger.seal import TEXT_EXPRESSION

    fill(ledger, 2)
    tamper(
        ledger_dsn,
        f"ALTER TABLE drillbook_evidence DROP CONSTRAINT IF EXISTS drillbook_evidence_{column}_check",
        f"UPDATE drillbook_evidence SET {column} = 'a' || chr({code}) || 'b' WHERE seq = 2",
        f"UPDATE drillbook_evidence r SET hash = encode(sha256(convert_to(r.prev_hash || ({TEXT_EXPRESSION}), "
        "'UTF8')), 'hex') WHERE seq = 2",
    )
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        streamed, sealed = _streamed(conn), _sealed(conn)
    assert [t for t, _ in streamed] == sealed and len(sealed) == 2
    assert [d for _, d in streamed] == [hashlib.sha256(t).digest() for t in sealed]
    report = ledger.verify(checkpoints=signed, full=True)
    assert report.ok and report.checked == 2, report.message
    tamper(ledger_dsn, f"UPDATE drillbook_evidence SET {column} = 'a' || chr({code}) || 'c' WHERE seq = 2")
    report = ledger.verify(checkpoints=signed, full=True)
    assert not report.ok and report.reason == "edited" and report.first_bad_seq == 2, report.message


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        ("target = 'a' || chr(34) || 'b'", "a quote put into a clean record"),
        ("run_id = run_id || chr(10)", "a newline appended"),
        ("controls = ARRAY['SOC2:A1.2' || chr(92)]", "a backslash in a control"),
        ("target = 'elsewhere'", "a plain edit (the unescaped branch)"),
        ("map_index = 7", "a number"),
    ],
)
def test_an_edit_is_found_in_either_branch(ledger, ledger_dsn, signed, edit, why):
    fill(ledger, 3)
    tamper(ledger_dsn, f"UPDATE drillbook_evidence SET {edit} WHERE seq = 2")
    report = ledger.verify(checkpoints=signed, full=True)
    assert not report.ok and report.reason == "edited" and report.first_bad_seq == 2, (why, report.message)


@pytest.mark.parametrize("column", ["map_index", "try_number", "controls", "target"])
def test_a_null_forced_into_a_column_is_an_edit_not_a_crash(ledger, ledger_dsn, signed, column):
    """NOT NULL dropped by a superuser, then a NULL written: the unescaped branch would render a NULL as an
    empty value; the walk takes the seal's expression instead, whose text is NULL, and names the record."""
    fill(ledger, 3)
    tamper(
        ledger_dsn,
        f"ALTER TABLE drillbook_evidence ALTER COLUMN {column} DROP NOT NULL",
        f"UPDATE drillbook_evidence SET {column} = NULL WHERE seq = 2",
    )
    report = ledger.verify(checkpoints=signed, full=True)
    assert not report.ok and report.first_bad_seq == 2, report.message


def test_a_copy_cancelled_mid_stream_raises_the_servers_error_and_leaves_the_connection_usable(
    ledger, ledger_dsn
):
    """Rows are taken straight from libpq's buffer while it holds them; a COPY the server ends with an error
    part way (a cancel here; a timeout or a terminated backend alike) must raise that error, never end the
    walk as if the chain ended there, and the connection must stay usable."""
    import psycopg

    from drillbook.ledger.chainstream import stream

    fill(ledger, 1)
    # ~22 MB of streamed rows (217 bytes each: the walk streams digests, not texts): more than the socket
    # holds. A plain copy of the table's columns (no generated columns, whose functions cost a bulk insert
    # into the ledger ~280 us a row); the walk reads whatever table it is given.
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bulk_stream AS SELECT g + 1 AS seq, r.recorded_at, r.record_type, r.kind, r.drill, "
            "r.target, r.verdict, r.controls, r.dag_id, 'bulk_' || g AS run_id, r.task_id, r.map_index, "
            "r.try_number, r.trigger, json_build_object('pad', repeat('x', 100)) AS result, "
            "md5('p' || g) || md5('q' || g) AS prev_hash, md5('h' || g) || md5('i' || g) AS hash "
            "FROM drillbook_evidence r, generate_series(1, 100000) g WHERE r.seq = 1"
        )
    with psycopg.connect(ledger_dsn) as conn, psycopg.connect(ledger_dsn, autocommit=True) as other:
        pid = conn.info.backend_pid
        rows = 0
        with pytest.raises(psycopg.errors.QueryCanceled):
            with conn.transaction(), conn.cursor() as cur:
                for _ in stream(cur, "bulk_stream", 0):
                    rows += 1
                    if rows == 10:
                        other.execute("SELECT pg_cancel_backend(%s)", (pid,))
        assert 10 <= rows < 100_000
        assert conn.execute("SELECT count(*) FROM bulk_stream").fetchone() == (100_000,)


def test_a_session_in_another_client_encoding_hashes_the_utf8_bytes(ledger, ledger_dsn, signed):
    """A LATIN1 session (which cannot even hold ✓) must still verify: the walk hashes the UTF-8 bytes the seal
    hashed (``convert_to``) and reads a bad record's columns in UTF-8; and an edit is still found."""
    from psycopg.conninfo import make_conninfo

    from drillbook.ledger.store import Ledger

    _awkward_records(ledger)
    fill(ledger, 2)
    latin1 = Ledger(make_conninfo(ledger_dsn, client_encoding="LATIN1"))
    try:
        report = latin1.verify(checkpoints=signed, full=True)
        assert report.ok and report.checked == 4, report.message
        tamper(ledger_dsn, "UPDATE drillbook_evidence SET target = 'naïve' WHERE seq = 2")
        report = latin1.verify(checkpoints=signed, full=True)
        assert not report.ok and report.reason == "edited" and report.first_bad_seq == 2, report.message
    finally:
        latin1.close()


@pytest.mark.parametrize(
    "shadow",
    [
        # chosen over to_json(anyelement) from any schema on the path: every text would render as ""
        "CREATE FUNCTION public.to_json(text) RETURNS json LANGUAGE sql AS $$ SELECT '\"\"'::json $$",
        # chosen over format(text, VARIADIC "any"): the plain branch's text would be whatever this says
        "CREATE FUNCTION public.format(text, VARIADIC text[]) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$",
    ],
    ids=["to_json", "format"],
)
def test_a_function_on_the_sessions_path_takes_no_part_in_the_walk(ledger, ledger_dsn, signed, shadow):
    """``public`` is on every session's path (and writable by every role on PostgreSQL 14 and older): a
    function there whose argument types fit better than the built-in's is chosen even though pg_catalog is
    searched first, and could make an edited record hash as its original. The walk's COPY must use only
    PostgreSQL's own functions: the healthy ledger still verifies, an edit is still found, and the session's
    path is back for the rest of the walk (the bad record is re-read by an unqualified table name)."""
    _awkward_records(ledger)
    fill(ledger, 2)
    tamper(ledger_dsn, shadow)
    report = ledger.verify(checkpoints=signed, full=True)
    assert report.ok and report.checked == 4, report.message
    tamper(ledger_dsn, "UPDATE drillbook_evidence SET target = 'elsewhere' WHERE seq = 3")
    report = ledger.verify(checkpoints=signed, full=True)
    assert not report.ok and report.reason == "edited" and report.first_bad_seq == 3, report.message
    assert "drill 'orders_nightly'" in report.message, report.message


def test_walk_stream_stops_at_each_kind_of_break():
    def row(seq: int, prev: str, at: str, text: bytes = b"x") -> tuple[int, str, str, str, bytes]:
        digest = hashlib.sha256(prev.encode() + text + str(seq).encode())
        return seq, prev, digest.hexdigest(), at, digest.digest()

    a = row(1, "0" * 64, "2026-01-01T00:00:00.000000Z")
    b = row(2, a[2], "2026-01-01T00:00:01.000000Z")
    c = row(3, b[2], "2026-01-01T00:00:02.000000Z")
    assert walk_stream([a, b, c]).bad_seq is None
    assert walk_stream([a, c]).bad_seq == 3  # gap
    assert walk_stream([a, row(2, "f" * 64, b[3])]).bad_seq == 2  # link
    assert walk_stream([a, (*b[:4], hashlib.sha256(b"edited").digest())]).bad_seq == 2  # body
    assert walk_stream([a, (*b[:4], b"")]).bad_seq == 2  # no digest (a NULL text)
    assert walk_stream([a, row(2, a[2], "2025-12-31T00:00:00.000000Z")]).bad_seq == 2  # time
