"""Attack cases for the statement filter in front of psql: what passes is exactly what psql may run.

Each hostile case is fed through the real filter and, where it matters, the
filtered output through a real psql into a scratch database, with marker
files that must not appear.
"""

from __future__ import annotations

import gzip
import io
import subprocess
from pathlib import Path

import pytest

from drillbook.drills.backup_restore import tools
from drillbook.drills.backup_restore.prescan import scan_plain
from drillbook.drills.backup_restore.sqlfilter import StatementFilter
from drillbook.drills.backup_restore.sqlrules import ESCAPE, SERVER
from drillbook.drills.backup_restore.sqlstream import filter_stream


def run(text: str | bytes, scope: str = "shared"):
    data = text.encode() if isinstance(text, str) else text
    out = io.BytesIO()
    flt = StatementFilter(scope)
    filter_stream(io.BytesIO(data), out.write, flt)
    return out.getvalue(), flt.refusal


def test_a_healthy_dump_passes_byte_for_byte(dumps):
    data = dumps["plain"].read_bytes()
    out, refusal = run(data)
    assert refusal is None and out == data


@pytest.mark.parametrize(
    "text, line",
    [
        ("SELECT 1;\n\\! touch x\n", 2),
        ("SELECT 1; \\! touch x\n", 1),  # a meta-command on the same line after a ';'
        ("SELECT 1;\r\n\\o out.txt\r\n", 2),  # CRLF line endings
        ("COPY t (a) FROM stdin;\n1\n\\.\n\\! touch x\n", 4),  # right after a COPY block
        ("COPY t (a) FROM stdin;\r\n1\r\n\\.\r\n\\! touch x\r\n", 4),
        ("SELECT 1\n\\g /tmp/x\n", 2),
        ("\\set x 'CREATE ROLE r'\n:x;\n", 1),
        ("\\i /etc/passwd\n", 1),
        ("\\copy t from program 'id'\n", 1),
        ("\\lo_export 1 /tmp/x\n", 1),
        ("\\c victim\n", 1),
        ("\\setenv PAGER 'sh'\n", 1),
    ],
)
def test_meta_commands_are_refused_with_their_line(text, line):
    out, refusal = run(text)
    assert refusal is not None and refusal.line == line, refusal
    assert b"touch" not in out and b"\\" not in out.replace(b"\\.", b"")


@pytest.mark.parametrize(
    "text",
    [
        "DO $x$ BEGIN EXECUTE 'COPY (select 1) TO PROGRAM ''id'''; END $x$;\n",
        "DO $$ BEGIN EXECUTE 'ALTER SYSTEM SET work_mem = 1'; END $$;\n",
        "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $b$ BEGIN CREATE ROLE r; END $b$;\n",
        "DO 'BEGIN PERFORM pg_read_file(''/etc/passwd''); END';\n",
        "CREATE FUNCTION s(text) RETURNS int AS '/lib/x86_64-linux-gnu/libc.so.6', 'system' LANGUAGE c;\n",
        "CREATE FUNCTION s(text) RETURNS int AS '$libdir/../../../lib/libc.so.6', 'system' LANGUAGE C STRICT;\n",
    ],
)
def test_statements_hidden_in_quoted_bodies_are_found(text):
    assert run(text)[1] is not None


@pytest.mark.parametrize(
    "text",
    [
        "SELECT '\\! not a command; CREATE ROLE x';\n",  # inside a string
        "SELECT $q$ \\! ; DROP DATABASE x; $q$;\n",  # inside a dollar quote
        "-- \\! a comment\nSELECT 1; /* \\o nested /* deeper */ still \\! */\n",
        "SELECT E'it\\'s \\\\ fine';\n",
        'SELECT "weird\\"""name";\n',
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\n",
        "COPY t (a, b) FROM stdin;\n1\t\\N\n2\ta\\\\b\\tc\\nd\\x41\\101\n\\.\n",  # data escapes pg_dump writes
        "COPY t (a) FROM stdin;\r\n1\r\n\\.\r\n",
        "CREATE FUNCTION f() RETURNS void AS '$libdir/plpgsql', 'plpgsql_call_handler' LANGUAGE c;\n",
        "SET ROLE someone;\nSET SESSION AUTHORIZATION someone;\nRESET ROLE;\n",
        "GRANT SELECT ON TABLE t TO bob;\n",
        "\\restrict Abc123\nSELECT 1;\n\\unrestrict Abc123\n",
    ],
)
def test_harmless_text_that_looks_dangerous_passes(text):
    out, refusal = run(text)
    assert refusal is None, refusal
    assert out == text.encode()


def test_copy_rows_that_psql_would_run_as_commands_if_the_copy_failed_are_refused():
    # COPY into a missing table fails, and psql then reads the rows as commands.
    out, refusal = run("COPY missing (a) FROM stdin;\n\\! touch x\n\\.\n")
    assert refusal is not None and refusal.line == 2 and b"touch" not in out


def test_text_after_copy_from_stdin_on_the_same_line_is_refused():
    assert run("COPY t FROM stdin; \\! id\n1\n\\.\n")[1] is not None


def test_a_statement_split_across_lines_is_held_until_judged():
    out, refusal = run("SELECT 1;\nCREATE\nDATABASE\nx\n;\n")
    assert refusal is not None and refusal.line == 2 and refusal.scope == SERVER
    assert out == b"SELECT 1;", "no part of the refused statement reached psql"


def test_the_ephemeral_scope_allows_databases_roles_and_connect_but_not_escapes():
    text = "CREATE ROLE r;\nCREATE DATABASE d;\n\\connect d\n\\connect -reuse-previous=on \"dbname='d'\"\nSELECT 1;\n"
    assert run(text, "ephemeral") == (text.encode(), None)
    for bad in (
        "\\connect d host=elsewhere\n",
        '\\connect "host=elsewhere dbname=d"\n',
        "\\! id\n",
        "COPY t TO '/tmp/x';\n",
        "CREATE TABLESPACE t LOCATION '/tmp';\n",
    ):
        refusal = run(bad, "ephemeral")[1]
        assert refusal is not None and refusal.scope == ESCAPE, bad


def test_very_long_lines_are_streamed_in_bounded_memory(tmp_path):
    """A 200 MB COPY row passes in 64 KiB pieces: the filter never holds the line."""
    path = tmp_path / "long.sql.gz"
    row = b"x" * (1 << 20)
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(b"COPY t (a) FROM stdin;\n")
        for _ in range(200):
            fh.write(row)
        fh.write(b"\n\\.\n")
    code = (
        "import gzip,sys;from drillbook.drills.backup_restore.sqlfilter import *;"
        "from drillbook.drills.backup_restore.sqlstream import filter_stream;"
        "f=StatementFilter();n=[0]\n"
        f"with gzip.open({str(path)!r},'rb') as s: filter_stream(s, lambda b: n.__setitem__(0, n[0]+len(b)), f)\n"
        # VmHWM, not ru_maxrss: a forked child's ru_maxrss starts at the (large) pytest parent's
        "hwm=[l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(n[0], f.refusal, hwm)"
    )
    out = subprocess.run(
        [str(Path(__import__("sys").executable)), "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout.split()
    assert int(out[0]) == 23 + 200 * (1 << 20) + 4 and out[1] == "None"
    assert int(out[2]) < 120_000, f"peak RSS {out[2]} KiB"  # about 40 MB of interpreter; 200 MB would show


def test_an_overlong_statement_is_refused_not_held():
    from drillbook.drills.backup_restore import sqlscan

    flt = StatementFilter()
    old = sqlscan.MAX_STATEMENT
    sqlscan.MAX_STATEMENT = 1 << 16
    try:
        out = io.BytesIO()
        filter_stream(io.BytesIO(b"SELECT '" + b"y" * (1 << 17) + b"';\n"), out.write, flt)
    finally:
        sqlscan.MAX_STATEMENT = old
    assert flt.refusal is not None and "cannot be judged" in flt.refusal.reason and out.getvalue() == b""


def test_prescan_names_the_dump_kind(tmp_path, pg):
    path = tmp_path / "c.sql"
    path.write_text(
        "--\n-- PostgreSQL database dump\n--\nCREATE DATABASE victim;\n\\connect victim\nSELECT 1;\n"
    )
    scan = scan_plain(path, gz=False, target="shared")
    assert scan.created_databases == ["victim"] and len(scan.refusals) == 2
    assert "creates and connects to database 'victim'" in scan.refusal_message(cluster=False, target="shared")
    assert scan_plain(path, gz=False, target="ephemeral").refusals == []


def test_filtered_output_restores_with_real_psql(pg, fresh_db, tmp_path):
    """What passes the filter is valid psql input: COPY data, dollar quotes and CRLF survive a real psql."""
    text = (
        "CREATE TABLE t (a int, b text);\r\nCOPY t (a, b) FROM stdin;\r\n1\tx\\ty\r\n2\t\\N\r\n\\.\r\n"
        "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $q$ SELECT ';\\!' $q$;\r\n"
    )
    out, refusal = run(text)
    assert refusal is None
    psql, _ = tools.choose("psql", min_major=None)
    assert psql is not None
    from drillbook.resources.pg import tool_env

    proc = subprocess.run(
        [psql.path, "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        input=out,
        env=tool_env(fresh_db),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    import psycopg

    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("select count(*), f() from t").fetchone() == (2, ";\\!")


def test_copy_rows_judged_in_blocks_still_name_the_exact_line():
    """COPY rows go through a block fast path; a bad row deep inside a block is found and named."""
    rows = [b"%d\tplain row with a \\\\ backslash pair and \\N\n" % i for i in range(100_000)]
    head = b"COPY t (a, b) FROM stdin;\n"
    healthy = head + b"".join(rows) + b"\\.\r\nSELECT 1;\n"
    assert run(healthy) == (healthy, None)
    bad_rows = list(rows)
    bad_rows[90_000] = b"90000\tx\\\\\\! touch x\n"  # "\\" then "\!": a pair, then a shell command
    import time

    t = time.perf_counter()
    out, refusal = run(head + b"".join(bad_rows) + b"\\.\n")
    assert refusal is not None and refusal.line == 90_002, refusal
    assert b"touch" not in out and time.perf_counter() - t < 20
    after = head + b"".join(rows) + b"\\.\n\\! touch x\n"
    out, refusal = run(after)
    assert refusal is not None and refusal.line == 100_003 and b"touch" not in out


@pytest.mark.parametrize(
    "text",
    [
        "SET client_encoding = 'SJIS';\n",
        "SET NAMES 'big5';\n",
        "SELECT set_config('client_encoding', 'GBK', false);\n",
        "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings';\n",
        "SET standard_conforming_strings TO DEFAULT;\n",
    ],
)
def test_settings_that_would_make_psql_read_strings_differently_are_refused(text):
    assert run(text)[1] is not None


def test_psql_session_starts_with_standard_conforming_strings_on(pg, fresh_db, tmp_path):
    """Even on a server whose default is off, psql reads '...\\' the way the filter does."""
    from drillbook.drills.backup_restore import restore
    from drillbook.resources.pg import parse

    db = parse(fresh_db)["dbname"]
    pg.execute("postgres", f'ALTER DATABASE "{db}" SET standard_conforming_strings = off')
    dump = tmp_path / "d.sql"
    dump.write_text(
        "CREATE TABLE s AS SELECT current_setting('standard_conforming_strings') AS v, 'a\\' AS w;\n"
    )
    psql, _ = tools.choose("psql", min_major=None)
    assert psql is not None
    outcome = restore.run_restore(
        fmt="plain", tool=psql, path=dump, scratch_db_dsn=fresh_db, jobs=1, no_owner=False, timeout=60
    )
    assert outcome.refusal is None and outcome.exit_code == 0, outcome.classifier.tail
    assert pg.execute(db, "select v, w from s") == [("on", "a\\")]


@pytest.mark.parametrize("pad", [0, 1, 2, 3])
def test_quotes_and_tags_at_read_boundaries_are_not_split(pad):
    """A long SQL line is read whole: an E'' escape or a dollar tag on a 64 KiB boundary stays intact."""
    from drillbook.drills.backup_restore.sqlfilter import PIECE

    filler = "x" * (PIECE - len("SELECT E'") - 1 + pad)
    escape = f"SELECT E'{filler}\\'; \\! touch x; ';\n"  # all one string to psql
    assert run(escape)[1] is None
    tag = f"SELECT $tag${'y' * (PIECE - 13 + pad)}$tag$; \\! touch x\n"
    assert run(tag)[1] is not None


def test_a_refused_meta_command_at_the_very_end_without_newline_is_not_passed():
    out, refusal = run("SELECT 1;\n\\! touch x")
    assert refusal is not None and out == b"SELECT 1;"
