"""Auditor commands: list, export (CSV/JSON, filtered by control and time), offline re-verify, errors."""

from __future__ import annotations

import csv
import io
import json

import psycopg
import pytest

from drillbook.cli import ledger_cmds
from drillbook.ledger.canonical import format_ts
from drillbook.safety.redact import forget_secrets, register_secret
from tests.ledger.conftest import ctx, fill, make_result


@pytest.fixture
def cli(ledger_dsn, monkeypatch, capsys):
    """Run a ledger command in-process with the DSN in the environment; return (exit code, stdout, stderr)."""
    monkeypatch.setenv("DRILLBOOK_LEDGER_DSN", ledger_dsn)

    def run(*argv: str) -> tuple[int, str, str]:
        code = ledger_cmds.main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def history(ledger):
    """Seven records: SOC2 drills 1-3, a DORA drill 4, SOC2 drills 5-7 (one FAIL at 6)."""
    fill(ledger, 3, controls=("SOC2:A1.2", "ISO27001:A.8.13"))
    ledger.record(make_result(drill="alerts", kind="alert_path", controls=("DORA:Art.12",)), ctx("dora_1"))
    ledger.record(make_result(drill="late"), ctx("late_1"))
    ledger.record(make_result(drill="late", fail=True), ctx("late_2"))
    ledger.record(make_result(drill="late"), ctx("late_3"))
    return ledger


def test_export_csv_filters_by_control_and_time_and_reverifies_offline(history, cli, tmp_path):
    since = format_ts(history.get(2).recorded_at)
    until = format_ts(history.get(6).recorded_at)
    out = tmp_path / "soc2.csv"
    code, _, err = cli(
        "evidence",
        "export",
        "--control",
        "SOC2:A1.2",
        "--since",
        since,
        "--until",
        until,
        "--format",
        "csv",
        "--output",
        str(out),
    )
    assert code == 0 and "exported 3 records" in err
    every = list(csv.DictReader(out.open(newline="")))
    rows = [r for r in every if r["record_type"]]
    assert [int(r["seq"]) for r in rows] == [2, 3, 5]  # 4 is DORA only, 6 is at --until (exclusive)
    # the records left out travel as link rows (seq, prev_hash, hash only), up to the head
    assert [(int(r["seq"]), r["verdict"]) for r in every if not r["record_type"]] == [
        (4, ""),
        (6, ""),
        (7, ""),
    ]
    assert set(rows[0]) >= {
        "seq",
        "recorded_at",
        "controls",
        "result",
        "prev_hash",
        "hash",
        "verdict",
        "run_id",
    }
    assert json.loads(rows[0]["controls"]) == ["SOC2:A1.2", "ISO27001:A.8.13"]
    assert rows[0]["prev_hash"] == history.get(1).hash
    code, text, _ = cli("evidence", "verify", "--file", str(out))
    assert code == 0 and text.startswith(f"export {out} OK: 3 records")


def test_export_json_is_valid_json_and_reverifies(history, cli, tmp_path):
    out = tmp_path / "all.json"
    code, _, _ = cli("evidence", "export", "--format", "json", "--output", str(out), "--since", "2000-01-01")
    assert code == 0
    records = json.loads(out.read_text())
    assert [r["seq"] for r in records] == list(range(1, 8))
    assert records[5]["result"]["findings"][0]["code"] == "RTO_EXCEEDED"
    assert records[-1]["hash"] == history.head().hash
    assert cli("evidence", "verify", "--file", str(out))[0] == 0
    dora = tmp_path / "dora.json"
    assert cli("evidence", "export", "--format", "json", "--control", "DORA:Art.12", "-o", str(dora))[0] == 0
    assert [r["drill"] for r in json.loads(dora.read_text()) if not r.get("omitted")] == ["alerts"]


def test_export_to_stdout_and_an_empty_export(history, cli):
    code, text, _ = cli("evidence", "export", "--format", "json", "--control", "NIST:AC-1")
    assert code == 0 and json.loads(text) == []
    code, text, _ = cli("evidence", "export", "--control", "DORA:Art.12")
    assert code == 0 and [r["drill"] for r in csv.DictReader(io.StringIO(text)) if r["record_type"]] == [
        "alerts"
    ]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_tampered_export_file_fails_offline_verify(history, cli, tmp_path, fmt):
    out = tmp_path / f"all.{fmt}"
    assert cli("evidence", "export", "--format", fmt, "-o", str(out))[0] == 0
    text = out.read_text()
    assert text.count("RTO_EXCEEDED") >= 1
    out.write_text(text.replace("RTO_EXCEEDED", "RTO_OK", 1))
    code, stdout, _ = cli("evidence", "verify", "--file", str(out))
    assert code == 1 and "BROKEN (edited) at seq=6" in stdout


def test_list_prints_a_table_newest_first(history, cli):
    code, text, err = cli("evidence", "list", "--control", "SOC2:A1.2", "--limit", "2")
    lines = text.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["seq", "recorded_at", "(UTC)"]
    assert [line.split()[0] for line in lines[2:]] == ["7", "6"]
    assert "RTO_EXCEEDED" in lines[3] and "2 records (at most 2" in err
    code, text, _ = cli(
        "evidence", "list", "--verdict", "FAIL", "--drill", "late", "--kind", "backup_restore"
    )
    assert [line.split()[0] for line in text.splitlines()[2:]] == ["6"]


def test_show_prints_one_record(history, cli):
    code, text, _ = cli("evidence", "show", "6")
    assert code == 0 and "record seq=6" in text and "RTO_EXCEEDED" in text and history.get(6).hash in text
    code, text, _ = cli("evidence", "show", "6", "--json")
    assert code == 0 and json.loads(text)["hash"] == history.get(6).hash
    code, _, err = cli("evidence", "show", "99")
    assert code == 2 and "no evidence record with seq=99" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("evidence", "list", "--since", "last tuesday"), "--since 'last tuesday' is not a date or time"),
        (("evidence", "export", "--until", "2026-13-45"), "--until '2026-13-45' is not a date or time"),
        (("evidence", "export", "--since", "2026-02-01", "--until", "2026-01-01"), "is not after --since"),
        (("evidence", "list", "--verdict", "GREEN"), "verdict 'GREEN' is not one of"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(history, cli, argv, message):
    code, _, err = cli(*argv)
    assert code == 2 and message in err


def test_missing_dsn_names_both_sources(monkeypatch, capsys):
    monkeypatch.delenv("DRILLBOOK_LEDGER_DSN", raising=False)
    assert ledger_cmds.main(["evidence", "verify"]) == 2
    err = capsys.readouterr().err
    assert "--ledger-dsn" in err and "DRILLBOOK_LEDGER_DSN" in err


def test_ledger_init_and_status(fresh_db, capsys):
    assert ledger_cmds.main(["ledger", "status", "--ledger-dsn", fresh_db]) == 2
    assert ledger_cmds.main(["evidence", "verify", "--ledger-dsn", fresh_db]) == 2
    assert "run `drillbook ledger init`" in capsys.readouterr().err
    assert ledger_cmds.main(["ledger", "init", "--ledger-dsn", fresh_db]) == 0
    from drillbook.ledger.schema import LATEST_VERSION

    versions = ", ".join(str(v) for v in range(1, LATEST_VERSION + 1))
    assert f"schema version {LATEST_VERSION} (applied {versions})" in capsys.readouterr().out
    assert ledger_cmds.main(["ledger", "init", "--ledger-dsn", fresh_db]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert ledger_cmds.main(["ledger", "status", "--ledger-dsn", fresh_db]) == 0
    assert "0 records, empty" in capsys.readouterr().out


def test_registered_secrets_never_land_in_rows(ledger, ledger_dsn):
    secret = "Sup3r-s3cret-ledger-value"
    register_secret(secret)
    try:
        result = make_result(target=f"postgresql://app:{secret}@db:5432/orders")
        result.details.update(
            {"note": f"connected with {secret}", secret: "as a key", "dsn": "password=hunter22 host=x"}
        )
        result.phases[0].detail = f"used {secret}"
        ledger.record(result, ctx(f"run_{secret}"))
        ledger.record_notify_failure(
            result, ctx(f"run_{secret}"), error=RuntimeError(f"auth failed for {secret}")
        )
        with psycopg.connect(ledger_dsn) as conn:
            raw = conn.execute("SELECT string_agg(t::text, E'\\n') FROM drillbook_evidence t").fetchone()[0]
        assert secret not in raw and "hunter22" not in raw
        assert "***" in raw
        assert ledger.verify().ok
    finally:
        forget_secrets()


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_exports_survive_control_characters_and_unicode(ledger, cli, tmp_path, fmt):
    result = make_result(target="db\nwith\x01odd\tchars ✓")
    result.details.update({"multi": 'line1\nline2\r\n\x01\x02 "quoted" \\ back', "emoji": "🚒"})
    ledger.record(result, ctx("run\nwith newline\x01"))
    ledger.record(make_result(), ctx("plain"))
    out = tmp_path / f"odd.{fmt}"
    assert cli("evidence", "export", "--format", fmt, "-o", str(out))[0] == 0
    if fmt == "json":
        records = json.loads(out.read_text())
        assert (
            records[0]["run_id"] == "run\nwith newline\x01"
            and records[0]["result"]["details"]["emoji"] == "🚒"
        )
    code, text, _ = cli("evidence", "verify", "--file", str(out))
    assert code == 0 and "OK: 2 records" in text


@pytest.mark.parametrize(
    ("make", "found"),
    [
        (
            lambda tmp: "/dev/zero",
            "found a character device",
        ),  # was "does not exist"; reading it would never end
        (lambda tmp: str(tmp), "found a directory"),
        (
            lambda tmp: _write(tmp / "zeros.csv", b"\0" * 4096),
            "found NUL bytes (a binary file)",
        ),  # was "OK: 0 records"
        (
            lambda tmp: _write(tmp / "other.csv", b"a,b\n1,2\n"),
            "found a first line of 2 column(s) without seq, prev_hash, hash",
        ),
        (lambda tmp: _write(tmp / "empty.csv", b""), "found an empty file"),
        (
            lambda tmp: _write(tmp / "latin.csv", "seq,caf\u00e9\n".encode("latin-1")),
            "expected a JSON-lines or CSV export (UTF-8 text), found byte 0xe9 at offset 7",
        ),
    ],
)
def test_verify_file_that_is_not_an_export_says_so_and_exits_2(cli, tmp_path, make, found):
    path = make(tmp_path)
    code, out, err = cli("evidence", "verify", "--file", path)
    assert code == 2 and "OK" not in out and "Traceback" not in err
    assert err.startswith(
        f"drillbook: error: {path} is not a drillbook export: expected a JSON-lines or CSV export"
    )
    assert found in err and "does not exist" not in err


def test_verify_file_that_is_missing_still_says_so(cli, tmp_path):
    code, _, err = cli("evidence", "verify", "--file", str(tmp_path / "nope.csv"))
    assert code == 2 and f"export file {str(tmp_path / 'nope.csv')!r} does not exist" in err


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_list_shows_finding_codes_from_the_generated_column_and_a_v3_ledger_still_lists(
    ledger, ledger_dsn, capsys
):
    """Schema v4 derives the codes on insert; a ledger still at v3 (column absent) lists them from the result."""
    from drillbook.ledger.export import LIST_HEADER, list_rows
    from drillbook.ledger.query import Filter

    ledger.record(make_result(fail=True), ctx("r_fail"))
    ledger.record(make_result(), ctx("r_pass"))
    rows = list(list_rows(ledger.connection, flt=Filter.build(), limit=None))
    codes = [r[LIST_HEADER.index("findings")] for r in rows]
    assert codes == ["", "RTO_EXCEEDED"]  # newest first
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:  # as a ledger not migrated to v4 yet
        conn.execute("ALTER TABLE drillbook_evidence DROP COLUMN finding_codes")
    rows = list(list_rows(ledger.connection, flt=Filter.build(), limit=None))
    assert [r[LIST_HEADER.index("findings")] for r in rows] == ["", "RTO_EXCEEDED"]


@pytest.mark.parametrize("window", [False, True], ids=["whole-ledger", "time-window"])
@pytest.mark.parametrize("newest_first", [True, False])
def test_list_orders_by_seq_as_a_number_across_a_digit_boundary(ledger, newest_first, window):
    """seq is shown as text; the order must still be numeric (text order put seq 9 before seq 10), with or
    without a time window (then ordered by (recorded_at, seq), the same order on a chain that verifies)."""
    from datetime import UTC, datetime, timedelta

    from drillbook.ledger.export import list_rows
    from drillbook.ledger.query import Filter

    fill(ledger, 11)
    now = datetime.now(UTC)
    flt = (
        Filter.build(since=now - timedelta(days=1), until=now + timedelta(days=1))
        if window
        else Filter.build()
    )
    rows = list(list_rows(ledger.connection, flt=flt, limit=None, newest_first=newest_first))
    expected = [str(n) for n in range(1, 12)]
    assert [r[0] for r in rows] == (expected[::-1] if newest_first else expected)
    limited = list(list_rows(ledger.connection, flt=flt, limit=2, newest_first=newest_first))
    assert [r[0] for r in limited] == (["11", "10"] if newest_first else ["1", "2"])


def test_list_shows_control_characters_as_question_marks_and_backslashes_as_they_are(ledger, cli):
    """A run id is the writer's text: an escape sequence must not reach the terminal and a newline or tab must
    not break the table; a backslash is shown once (COPY's text format doubles it on the wire)."""
    ledger.record(make_result(), ctx("evil\x1b[2J\nrun\tid\\x"))
    ledger.record(make_result(), ctx("plain_run"))
    code, text, err = cli("evidence", "list")
    lines = text.splitlines()
    assert code == 0 and "2 records" in err and len(lines) == 4  # header, rule, two records: one line each
    assert "\x1b" not in text and "\t" not in text
    assert "evil?[2J?run?id\\x" in lines[3] and "plain_run" in lines[2]


@pytest.mark.parametrize("batch", [1, 2, 3, 1000])
def test_list_lines_are_the_same_whatever_the_batch(ledger, batch, monkeypatch):
    """Rows come in batches laid out with one format call each: a batch boundary changes nothing, every
    column of every line starts where the header's does, and the last column is not padded."""
    from drillbook.ledger import export
    from drillbook.ledger.export import LIST_HEADER, list_lines, list_rows
    from drillbook.ledger.query import Filter

    ledger.record(make_result(drill="a_much_longer_drill_name", fail=True), ctx("r_long"))  # listed last
    fill(ledger, 3)
    reference = "".join(list_lines(ledger.connection, flt=Filter.build(), limit=None, batch=10_000))
    text = "".join(list_lines(ledger.connection, flt=Filter.build(), limit=None, batch=batch))
    assert text == reference
    with monkeypatch.context() as m:  # columns sized by the first two rows only: later batches keep that size
        m.setattr(export, "_WIDTH_SAMPLE", 2)
        small = "".join(list_lines(ledger.connection, flt=Filter.build(), limit=None, batch=batch))
        assert small == "".join(list_lines(ledger.connection, flt=Filter.build(), limit=None, batch=10_000))
        assert small != reference and "a_much_longer_drill_name" in small.splitlines()[-1]
    lines = text.splitlines()
    rows = list(list_rows(ledger.connection, flt=Filter.build(), limit=None))
    assert len(lines) == 2 + len(rows) == 6
    starts = [lines[0].index(h) for h in LIST_HEADER]
    for line, row in zip(lines[2:], rows, strict=True):
        assert [line[s:].split("  ")[0].strip() for s in starts] == [cell or "" for cell in row]
        assert not line.endswith(" ")


def test_an_empty_list_prints_the_header_and_no_records(ledger, cli):
    code, text, err = cli("evidence", "list", "--drill", "nothing_like_this")
    assert code == 0 and "0 records" in err
    assert text.splitlines()[0].split()[:2] == ["seq", "recorded_at"] and len(text.splitlines()) == 2


def test_list_pads_by_characters_when_a_batch_is_not_ascii(ledger, monkeypatch):
    """An ASCII batch is padded as bytes; a batch with a multi-byte character is padded as text, so the
    columns after a cell like 'zürich_東京' still line up with the header (padded as bytes, they would not)."""
    from drillbook.ledger import export
    from drillbook.ledger.export import LIST_HEADER, list_lines
    from drillbook.ledger.query import Filter

    ledger.record(make_result(drill="dr_zürich_東京"), ctx("run_é"))
    ledger.record(make_result(drill="plain_drill_name_long"), ctx("run_plain_longer"))  # listed first
    monkeypatch.setattr(export, "_WIDTH_SAMPLE", 1)  # the plain row sizes the columns; the other comes later
    for batch in (1, 1000):
        lines = "".join(
            list_lines(ledger.connection, flt=Filter.build(), limit=None, batch=batch)
        ).splitlines()
        start = {h: lines[0].index(h) for h in LIST_HEADER}
        for line, drill, run in (
            (lines[2], "plain_drill_name_long", "run_plain_longer"),
            (lines[3], "dr_zürich_東京", "run_é"),
        ):
            assert line[start["drill"] :].startswith(drill + " "), line
            assert line[start["verdict"] :].startswith("PASS "), line
            assert line[start["run_id"] :].startswith(run + " "), line


def test_a_windowed_list_is_in_time_order_and_a_backdated_row_shows_where_verify_fails(
    ledger, ledger_dsn, cli
):
    """With a time window the list is ordered by (recorded_at, seq): the seq order on any chain that verifies.
    A row backdated by an insider is listed at its (false) time, its seq out of step, and verify fails it."""
    from datetime import UTC, datetime, timedelta

    from drillbook.ledger.export import list_rows
    from drillbook.ledger.query import Filter
    from tests.ledger.conftest import tamper

    fill(ledger, 5)
    now = datetime.now(UTC)
    window = Filter.build(since=now - timedelta(days=30), until=now + timedelta(days=1))
    assert [r[0] for r in list_rows(ledger.connection, flt=window, limit=None)] == ["5", "4", "3", "2", "1"]
    assert ledger.verify().ok
    tamper(
        ledger_dsn,
        "UPDATE drillbook_evidence SET recorded_at = recorded_at - interval '7 days' WHERE seq = 4",
    )
    assert [r[0] for r in list_rows(ledger.connection, flt=window, limit=None)] == ["5", "3", "2", "1", "4"]
    assert [r[0] for r in list_rows(ledger.connection, flt=Filter.build(), limit=None)] == [
        "5",
        "4",
        "3",
        "2",
        "1",
    ]
    report = ledger.verify(full=True)
    assert not report.ok and "4" in report.message
    code, _, _ = cli("evidence", "verify", "--full")
    assert code != 0


def test_a_windowed_list_with_a_limit_reads_only_its_rows(ledger, ledger_dsn):
    """The default list (50 rows of a window) must cost its rows, not the window's: the plan walks the
    recorded_at index and stops at the LIMIT, with no sort of the whole window (that cost 1.2 s for 50 rows of
    ten months at 1M records). Checked with EXPLAIN ANALYZE: the rows read from the table stay near the
    LIMIT however large the window."""
    from datetime import UTC, datetime, timedelta

    from drillbook.ledger.export import _list_select
    from drillbook.ledger.query import Filter

    fill(ledger, 3)
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:  # a big window's worth of rows, cheaply
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "INSERT INTO drillbook_evidence (seq, recorded_at, record_type, kind, drill, target, verdict, "
            "controls, dag_id, run_id, task_id, trigger, result, prev_hash, hash) "
            "SELECT 1000 + g, now() - interval '1 second' * (5000 - g), record_type, kind, drill, target, "
            "verdict, controls, dag_id, 'bulk_' || g, task_id, trigger, result, "
            "lpad(to_hex(g), 64, '0'), lpad(to_hex(100000 + g), 64, '0') "
            "FROM drillbook_evidence e, generate_series(1, 5000) g WHERE e.seq = 1"
        )
        conn.execute("ANALYZE drillbook_evidence")
    now = datetime.now(UTC)
    window = Filter.build(since=now - timedelta(days=30), until=now + timedelta(days=1))
    sql, params = _list_select(ledger.connection, window, 5, True)
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchone()[0][0]["Plan"]

    def nodes(node):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    scans = [n for n in nodes(plan) if "Scan" in n["Node Type"]]
    assert plan["Actual Rows"] == 5
    assert all(n["Actual Rows"] <= 50 for n in scans), [(n["Node Type"], n["Actual Rows"]) for n in scans]
    assert not any(n["Node Type"] == "Sort" for n in nodes(plan))
