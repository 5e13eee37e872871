"""Outside attacks on the plain-dump filter, each replayed through a real psql: what psql runs is what the filter judged.

Every case here got past the filter once: the filter's reading of the bytes
differed from psql's (a NUL byte, a carriage return ending a ``--`` comment,
a backtick in ``\\connect``). Each test feeds the filter's output to a real
psql in a fresh database, with the work directory as psql's cwd, and checks
that the marker file or object is absent; a healthy twin stays green.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import psycopg
import pytest

from drillbook.drills.backup_restore import tools
from drillbook.drills.backup_restore.sqlfilter import StatementFilter
from drillbook.drills.backup_restore.sqlstream import filter_stream
from drillbook.resources.pg import tool_env

DATA = Path(__file__).parent / "data"


def _filter(data: bytes, scope: str = "shared"):
    out = io.BytesIO()
    flt = StatementFilter(scope)
    filter_stream(io.BytesIO(data), out.write, flt)
    return out.getvalue(), flt.refusal


def _psql(fed: bytes, dsn: str, cwd: Path) -> subprocess.CompletedProcess:
    psql, _ = tools.choose("psql", min_major=None)
    assert psql is not None
    env = tool_env(dsn)
    env["PSQLRC"] = "/dev/null"
    env["PGOPTIONS"] = "-c standard_conforming_strings=on"
    return subprocess.run(
        [psql.path, "--no-psqlrc", "-q", "-v", "ON_ERROR_STOP=0", "-f", "-"],
        input=fed,
        env=env,
        cwd=cwd,
        capture_output=True,
        timeout=60,
        check=False,
    )


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("select tablename from pg_tables where schemaname = 'public'")}


def test_a_nul_byte_cannot_hide_a_shell_command_from_the_filter(fresh_db, tmp_path):
    """psql reads lines with fgets() and strlen(): a NUL cuts the line, so the next line joins it outside the quote."""
    hostile = b"SELECT 1 \x00 '\n\\! touch marker\n' ;\n"
    fed, refusal = _filter(hostile)
    _psql(fed, fresh_db, tmp_path)
    assert not (tmp_path / "marker").exists()
    assert refusal is not None and refusal.line == 1 and "NUL" in refusal.reason, refusal


def test_a_nul_byte_in_copy_rows_is_refused_too():
    rows = b"COPY t (a) FROM stdin;\n" + b"".join(b"%d\n" % i for i in range(1000)) + b"5\x00\n\\.\n"
    _, refusal = _filter(rows)
    assert refusal is not None and refusal.line == 1002 and "NUL" in refusal.reason, refusal


def test_a_carriage_return_ends_a_line_comment_for_psql_and_for_the_filter(fresh_db, tmp_path):
    """psql ends ``--`` comments at \\r as well as \\n (psqlscan.l: non_newline [^\\n\\r])."""
    hostile = (
        b"SELECT 1; -- a comment\rCREATE TABLE sneaked (i int);\n"
        b"-- x\rCOPY (select 1) TO PROGRAM 'touch marker';\n"
    )
    fed, refusal = _filter(hostile)
    assert refusal is not None and refusal.line == 2 and "PROGRAM" in refusal.statement, refusal
    _psql(fed, fresh_db, tmp_path)
    assert "sneaked" in _tables(fresh_db)  # what the filter passed is what psql ran, and the filter saw it
    assert not (tmp_path / "marker").exists()


def test_cr_only_line_endings_in_a_healthy_dump_still_pass(fresh_db, tmp_path):
    healthy = b"-- a comment\rCREATE TABLE t (a int);\r-- another\rINSERT INTO t VALUES (1);\r"
    fed, refusal = _filter(healthy)
    assert refusal is None and fed == healthy
    proc = _psql(fed, fresh_db, tmp_path)
    assert proc.returncode == 0 and "t" in _tables(fresh_db), proc.stderr


@pytest.mark.parametrize(
    "connect",
    [
        b"\\connect `touch${IFS}marker;echo${IFS}DB`\n",  # psql runs a backquoted argument as a shell command
        b'\\connect "DB"`touch${IFS}marker`""\n',  # glued after a quoted part
        b"\\c :'LAST_ERROR_MESSAGE'\n",  # a psql variable: its value is not what the filter read
    ],
)
def test_connect_in_an_ephemeral_cluster_takes_a_plain_name_only(fresh_db, tmp_path, connect):
    db = psycopg.conninfo.conninfo_to_dict(fresh_db)["dbname"]
    hostile = b"SELECT 1;\n" + connect.replace(b"DB", db.encode()) + b"SELECT 2;\n"
    fed, refusal = _filter(hostile, scope="ephemeral")
    _psql(fed, fresh_db, tmp_path)
    assert not (tmp_path / "marker").exists()
    assert refusal is not None and refusal.line == 2, refusal


@pytest.mark.parametrize(
    "connect",
    [
        b"\\connect victim",
        b"\\connect -reuse-previous=on \"dbname='we\\'ird db'\"",
        b"\\connect template1",
        b"\\c my.db_1",
    ],
)
def test_connect_lines_pg_dump_writes_pass_in_an_ephemeral_cluster(connect):
    _, refusal = _filter(b"SELECT 1;\n" + connect + b"\nSELECT 2;\n", scope="ephemeral")
    assert refusal is None, refusal


def test_a_real_pg_dump_c_of_a_database_whose_name_needs_quotes_is_not_refused_in_an_ephemeral_cluster(
    pg, tmp_path
):
    """pg_dump -C writes ``\\encoding SQL_ASCII`` and a quoted ``\\connect -reuse-previous=on "dbname='…'"``."""
    from drillbook.drills.backup_restore.prescan import scan_plain
    from tests.backup_restore.conftest import pg_dump

    name = "we'ird db"
    pg.drop_database(name)
    pg.execute("postgres", 'CREATE DATABASE "we\'ird db"')
    try:
        pg.execute(name, "CREATE TABLE t (a int); INSERT INTO t VALUES (1)")
        dump = pg_dump(pg, pg.dsn(name), tmp_path / "weird.sql", "-C")
        # pg_dump 16.2 (pgserver) quotes the \connect; 15.14+/16.10+ also write \encoding SQL_ASCII before it
        # (data/: written by Debian's pg_dump 15.20 for the same database)
        for path in (dump, DATA / "pg_dump_15.20_C_quoted_name.sql"):
            scan = scan_plain(path, gz=False, target="ephemeral")
            assert scan.refusals == [] and scan.created_databases == [name] and scan.connects == [name], path
            assert scan_plain(path, gz=False, target="shared").refusals  # still refused on a shared server
        assert b"\\encoding SQL_ASCII" in (DATA / "pg_dump_15.20_C_quoted_name.sql").read_bytes()
    finally:
        pg.drop_database(name)


@pytest.mark.parametrize("meta", [b"\\encoding SJIS", b"\\encoding BIG5", b"\\encoding UTF8 \\! touch x"])
def test_encoding_switches_that_change_how_psql_lexes_are_refused(meta):
    assert _filter(b"SELECT 1;\n" + meta + b"\n", scope="ephemeral")[1] is not None


@pytest.fixture
def subscribed_dump(pg, tmp_path) -> Path:
    """A real pg_dump of a database with a publication and a subscription (pg_dump writes ``connect = false``)."""
    from tests.backup_restore.conftest import pg_dump

    name = "drillbook_iso_sub"
    pg.drop_database(name)
    pg.execute("postgres", f"CREATE DATABASE {name}")
    try:
        pg.execute(
            name,
            "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT g, 'i' || g "
            "FROM generate_series(1, 20) g; CREATE PUBLICATION pub FOR TABLE items",
        )
        pg.execute(
            name,
            "CREATE SUBSCRIPTION sub CONNECTION 'host=127.0.0.1 port=1 dbname=nowhere' PUBLICATION pub "
            "WITH (connect = false)",
        )
        (tmp_path / "sub").mkdir()
        dump = pg_dump(pg, pg.dsn(name), tmp_path / "sub" / "sub.sql")
        pg.execute(name, "ALTER SUBSCRIPTION sub SET (slot_name = NONE)")
        pg.execute(name, "DROP SUBSCRIPTION sub")
    finally:
        pg.drop_database(name)
    assert b"connect = false" in dump.read_bytes()
    return dump


def test_a_real_dump_with_a_subscription_restores_into_an_ephemeral_cluster_and_passes(
    subscribed_dump, tmp_path, drill_runner
):
    """pg_dump writes a subscription disabled, with connect = false: no connection is made, so it is no escape."""
    from tests.backup_restore.conftest import make_drill

    drill = make_drill(
        str(subscribed_dump.parent),
        verify={"min_rows": {"public.items": 20}, "rpo_probe": None},
        restore={"target": "ephemeral"},
    )
    result = drill_runner(drill, work_dir=tmp_path / "work")
    assert result.verdict.value == "PASS", [(f.code, f.message) for f in result.findings]


def test_a_dump_with_a_subscription_is_still_refused_on_a_shared_server(subscribed_dump):
    from drillbook.drills.backup_restore.prescan import scan_plain

    refusals = scan_plain(subscribed_dump, gz=False, target="shared").refusals
    assert (
        refusals and "subscription" in refusals[0].reason
    )  # it would block DROP DATABASE of the scratch database


@pytest.mark.parametrize(
    "text",
    [
        "CREATE SUBSCRIPTION s CONNECTION 'host=10.0.0.1' PUBLICATION p;\n",  # connects at once
        "CREATE SUBSCRIPTION s CONNECTION 'host=10.0.0.1' PUBLICATION p WITH (connect = true);\n",
        "ALTER SUBSCRIPTION s ENABLE;\n",
        "ALTER SUBSCRIPTION s CONNECTION 'host=10.0.0.1';\n",
        "ALTER SUBSCRIPTION s REFRESH PUBLICATION;\n",
        "DROP SUBSCRIPTION s;\n",  # connects to the publisher to drop the slot
    ],
)
def test_subscriptions_that_connect_are_refused_in_an_ephemeral_cluster(text):
    refusal = _filter(text.encode(), scope="ephemeral")[1]
    assert refusal is not None and "connects to another server" in refusal.reason, refusal


def test_the_ephemeral_cluster_does_not_inherit_the_drills_environment(monkeypatch):
    """A superuser inside the cluster (a dump's dynamic SQL) can read the server's environment: no secret may be there."""
    from drillbook.drills.backup_restore.ephemeral import EphemeralCluster

    monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_SCRATCH", "postgresql://drill:hunter2-in-env@db/postgres")
    monkeypatch.setenv("PGPASSWORD", "hunter2-in-env")
    cluster = EphemeralCluster(min_major=None).start()
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TEMP TABLE e (line text)")
            conn.execute("COPY e FROM PROGRAM 'env'")
            env = [r[0] for r in conn.execute("SELECT line FROM e")]
            assert env, "the probe read nothing"
            assert not [line for line in env if "hunter2" in line], env
            assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
    finally:
        cluster.close()


_HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from drillbook.drills.backup_restore.ephemeral import EphemeralCluster
c = EphemeralCluster(min_major=None).start()
print(c.root, flush=True)
time.sleep(600)
"""


def _postmaster_pid(root: Path) -> int:
    return int((root / "data" / "postmaster.pid").read_text().splitlines()[0])


def _alive(pid: int) -> bool:
    try:
        return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_a_cluster_left_by_a_sigkilled_drill_is_reaped_and_a_live_one_is_not():
    import os
    import signal
    import sys
    import time

    from drillbook.drills.backup_restore.ephemeral import EphemeralCluster

    plugins = str(Path(__file__).resolve().parents[2] / "plugins")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, plugins], stdout=subprocess.PIPE, text=True)
    live = None
    try:
        assert holder.stdout is not None
        left = Path(holder.stdout.readline().strip())
        pid = _postmaster_pid(left)
        live = EphemeralCluster(min_major=None).start()  # another drill's cluster, in use
        assert str(left) not in live.reaped and left.exists()  # its drill still holds it
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        assert left.exists() and _alive(pid), "SIGKILL left the cluster running (what the reaper is for)"
        nxt = EphemeralCluster(min_major=None).start()
        try:
            assert str(left) in nxt.reaped and str(live.root) not in nxt.reaped
            assert not left.exists()
            for _ in range(50):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            assert not _alive(pid), "the left-over postmaster still runs"
            assert live.root is not None and live.root.exists() and _alive(_postmaster_pid(live.root))
        finally:
            nxt.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if live is not None:
            live.close()


@pytest.mark.parametrize(
    "text",
    [
        "SELECT \"pg_read_file\"('/etc/passwd');\n",  # a quoted name the server folds to the same function
        "SELECT pg_catalog.\"lo_export\"(1, '/tmp/x');\n",
        'SELECT "pg_terminate_backend"(pid) FROM pg_stat_activity;\n',
        "SELECT set_config(E'client\\137encoding', 'SJIS', false);\n",  # octal escape in an E'' string
        "SELECT set_config(E'client\\x5fencoding', 'SJIS', false);\n",
        "SELECT set_config(U&'client\\005fencoding', 'SJIS', false);\n",  # Unicode escapes
        "SELECT U&\"pg\\005fread_file\"('/etc/passwd');\n",
        "DO E'BEGIN EXECUTE ''ALTER \\123YSTEM SET work_mem = 1''; END';\n",
        "PREPARE TRANSACTION 'left';\n",  # outlives the session; the scratch database can no longer be dropped
    ],
)
def test_names_spelt_another_way_are_read_as_the_server_reads_them(text):
    refusal = _filter(text.encode())[1]
    assert refusal is not None, text


@pytest.mark.parametrize(
    "text",
    [
        'CREATE TABLE "Database" ("role" int);\n',  # a quoted name that is not a keyword's spelling stays a name
        "SELECT E'it\\'s', E'tab\\there';\n",
        'CREATE TABLE "public"."system" ("copy" int);\n',
    ],
)
def test_quoted_names_and_e_strings_in_healthy_dumps_pass(text):
    assert _filter(text.encode())[1] is None


_DYNAMIC = {
    # dynamic SQL: no reading catches it; a superuser scratch role lets it run; the audit must see what it left
    # (ALTER SYSTEM, tablespaces and CREATE DATABASE cannot run inside DO: a transaction block)
    "parameter_grant": (
        "DO $x$ BEGIN EXECUTE 'GRANT SET ON PARA' || 'METER work_mem TO public'; END $x$;",
        "work_mem",
    ),
    "role_comment": (
        "DO $x$ BEGIN EXECUTE format('COMMENT ON %s %I IS %L', 'RO' || 'LE', current_user, 'x'); END $x$;",
        "role ",
    ),
    "slot": (
        "DO $x$ BEGIN EXECUTE 'SELECT pg_create_phys' || 'ical_replication_slot(''drillbook_iso_slot'')'; END $x$;",
        "drillbook_iso_slot",
    ),
}


@pytest.mark.parametrize("name", sorted(_DYNAMIC))
def test_the_audit_sees_server_state_left_by_dynamic_sql_under_a_superuser_scratch_role(
    pg, dumps, tmp_path, drill_runner, name
):
    from tests.backup_restore.conftest import make_drill

    inject, shown = _DYNAMIC[name]
    text = dumps["plain"].read_text()
    i = text.index("CREATE TABLE")
    (tmp_path / "d").mkdir()
    path = tmp_path / "d" / "shop.sql"
    path.write_text(text[:i] + inject + "\n" + text[i:])
    try:
        result = drill_runner(make_drill(str(path.parent)))
        side = [f for f in result.findings if f.code == "SCRATCH_SIDE_EFFECT"]
        assert side and shown in side[0].message, [(f.code, f.message) for f in result.findings]
        assert result.verdict.value != "PASS"
    finally:
        pg.execute("postgres", "REVOKE SET ON PARAMETER work_mem FROM public")
        pg.execute(
            "postgres", "DO $x$ BEGIN EXECUTE format('COMMENT ON ROLE %I IS NULL', current_user); END $x$"
        )
        pg.execute(
            "postgres",
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = 'drillbook_iso_slot'",
        )


def test_the_audit_of_a_healthy_dump_stays_clean_under_a_superuser_scratch_role(dumps, drill_runner):
    from tests.backup_restore.conftest import make_drill

    result = drill_runner(make_drill(str(dumps["plain"].parent)))
    assert result.verdict.value == "PASS", [(f.code, f.message) for f in result.findings]


def test_a_psql_variable_holding_text_the_dump_chose_cannot_become_a_meta_command(fresh_db, tmp_path):
    """psql lexes a variable's value where ``:NAME`` stands; LAST_ERROR_MESSAGE is whatever the dump raised."""
    hostile = (
        b"DO $$ BEGIN RAISE EXCEPTION '%', E'\\\\! touch marker'; END $$;\nSELECT 1 :LAST_ERROR_MESSAGE\n;\n"
    )
    fed, refusal = _filter(hostile)
    _psql(fed, fresh_db, tmp_path)
    assert not (tmp_path / "marker").exists()
    assert refusal is not None and refusal.line == 2 and "variable" in refusal.reason, refusal


def test_casts_slices_and_assignments_that_look_like_variables_pass(fresh_db, tmp_path):
    healthy = (
        b"CREATE TABLE t AS SELECT 'x'::text AS a, (ARRAY[1,2,3])[1:2] AS b, (ARRAY[1,2,3])[1:n] AS c "
        b"FROM (SELECT 2 AS n) s;\nDO $$ DECLARE x int; BEGIN x := 1; END $$;\n"
    )
    fed, refusal = _filter(healthy)
    assert refusal is None and fed == healthy
    proc = _psql(fed, fresh_db, tmp_path)
    assert proc.returncode == 0 and b"ERROR" not in proc.stderr, proc.stderr


def test_the_ephemeral_server_runs_without_a_network():
    """A superuser in the cluster can run programs (dynamic SQL); they must not reach any other host or service."""
    import os
    import shutil

    from drillbook.drills.backup_restore.ephemeral import EphemeralCluster

    if shutil.which("unshare") is None:
        pytest.skip("util-linux unshare is not installed (.ci/run installs it)")
    probe = (
        ["unshare", "--net", "true"]
        if os.geteuid() == 0
        else ["unshare", "--map-current-user", "--net", "true"]
    )
    if subprocess.run(probe, capture_output=True, check=False, timeout=30).returncode != 0:
        pytest.skip("this kernel/container refuses network namespaces (the cluster then says 'host network')")
    cluster = EphemeralCluster(min_major=None).start()
    try:
        assert cluster.network == "private network namespace", cluster.network
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TEMP TABLE e (line text)")
            conn.execute("COPY e FROM PROGRAM 'readlink /proc/self/ns/net; tail -n +3 /proc/net/dev'")
            lines = [r[0] for r in conn.execute("SELECT line FROM e")]
        assert lines[0] != os.readlink("/proc/self/ns/net"), "the server shares the drill's network"
        assert [x.split(":")[0].strip() for x in lines[1:]] == ["lo"], lines
    finally:
        cluster.close()


def test_a_client_encoding_switched_by_code_the_dump_ran_cannot_desynchronise_psql(fresh_db, tmp_path):
    """Dynamic SQL switches the session to SJIS; psql follows the server and would read 0x95 0x27 as one character,
    so the quote the filter saw is gone and ``\\!`` runs. The feed pins psql's encoding after every statement."""
    from drillbook.drills.backup_restore import restore

    marker = tmp_path / "marker"
    dump = tmp_path / "d.sql"
    dump.write_bytes(
        b"SET client_encoding = 'UTF8';\n"
        b"DO $$ BEGIN EXECUTE 'SET client_enc' || 'oding = ''SJIS'''; END $$;\n"
        b"SELECT \x95' \\! touch " + str(marker).encode() + b"\n';\n"
        b"CREATE TABLE after_it (a text);\nCOPY after_it (a) FROM stdin;\nx\xc3\xa9\n\\.\n"
    )
    psql, _ = tools.choose("psql", min_major=None)
    assert psql is not None
    outcome = restore.run_restore(
        fmt="plain", tool=psql, path=dump, scratch_db_dsn=fresh_db, jobs=1, no_owner=False, timeout=60
    )
    assert not marker.exists(), "a shell command ran on the worker"
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT a FROM after_it").fetchall() == [("xé",)]  # psql is back on UTF8 after it
    assert outcome.refusal is None


def test_pinning_the_encoding_keeps_a_real_latin1_dump_and_its_line_numbers(fresh_db, tmp_path, pg):
    from drillbook.drills.backup_restore import restore

    dump = tmp_path / "l.sql"
    dump.write_bytes(
        b"SET client_encoding = 'LATIN1';\nCREATE TABLE t (a text);\nCOPY t (a) FROM stdin;\ncaf\xe9\n\\.\n"
        b"SELECT 1/0;\nSELECT 'x'::int;\n"
    )
    psql, _ = tools.choose("psql", min_major=None)
    assert psql is not None
    outcome = restore.run_restore(
        fmt="plain", tool=psql, path=dump, scratch_db_dsn=fresh_db, jobs=1, no_owner=False, timeout=60
    )
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT a FROM t").fetchall() == [("café",)]
    tail = "\n".join(outcome.classifier.tail)
    assert "<stdin>:6:" in tail and "<stdin>:7:" in tail and "encoding" not in tail.lower(), tail


def test_standard_conforming_strings_switched_off_by_code_the_dump_ran_cannot_desynchronise_psql(
    fresh_db, tmp_path
):
    """psql follows standard_conforming_strings too: off, it reads 'a\\' as an open string and the filter's next
    string as code. Strings holding a backslash are fed as E'' (same value), which both modes read alike."""
    from drillbook.drills.backup_restore import restore

    marker = tmp_path / "marker"
    dump = tmp_path / "d.sql"
    dump.write_bytes(
        b"DO $$ BEGIN EXECUTE 'SET standard_conforming' || '_strings = off'; END $$;\n"
        b"SELECT 'a\\' , ' ;\n\\! touch " + str(marker).encode() + b"\n';\n"
        b"CREATE TABLE t AS SELECT 'C:\\dir\\' AS path, 'it''s' AS q;\n"
    )
    psql, _ = tools.choose("psql", min_major=None)
    assert psql is not None
    restore.run_restore(
        fmt="plain", tool=psql, path=dump, scratch_db_dsn=fresh_db, jobs=1, no_owner=False, timeout=60
    )
    assert not marker.exists(), "a shell command ran on the worker"
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT path, q FROM t").fetchone() == ("C:\\dir\\", "it's")


def test_a_real_inserts_dump_with_backslashes_restores_the_same_values(pg, tmp_path, fresh_db):
    from drillbook.drills.backup_restore import restore
    from tests.backup_restore.conftest import pg_dump

    name = pg.create_database("bs")
    try:
        values = ["C:\\", "a\\'b", "\\\\server\\share", "tab\tnew\nline", "it's", "\\x41"]
        pg.execute(name, "CREATE TABLE v (i int, s text)")
        for i, v in enumerate(values):
            pg.execute(name, "INSERT INTO v VALUES (%s, %s)", (i, v))
        dump = pg_dump(pg, pg.dsn(name), tmp_path / "ins.sql", "--inserts")
    finally:
        pg.drop_database(name)
    psql, _ = tools.choose("psql", min_major=None)
    assert psql is not None
    outcome = restore.run_restore(
        fmt="plain", tool=psql, path=dump, scratch_db_dsn=fresh_db, jobs=1, no_owner=False, timeout=60
    )
    assert outcome.exit_code == 0 and outcome.refusal is None, outcome.classifier.tail
    with psycopg.connect(fresh_db) as conn:
        assert [r[0] for r in conn.execute("SELECT s FROM v ORDER BY i")] == values


@pytest.mark.parametrize("text", ["SELECT N'a\\';\n", "SELECT B'1\\';\n", "SELECT x'A\\';\n"])
def test_a_backslash_in_national_bit_or_hex_strings_is_refused(text):
    assert _filter(text.encode())[1] is not None


def test_rows_of_a_copy_that_failed_to_start_are_not_run_as_sql(fresh_db, tmp_path):
    """COPY into a missing table: psql reads the rows that follow as SQL. The feed wraps them in \\if :ERROR."""
    from drillbook.drills.backup_restore import restore

    dump = tmp_path / "d.sql"
    dump.write_bytes(
        b"CREATE TABLE ok (a text);\nCOPY ok (a) FROM stdin;\nfirst\nsecond\n\\.\n"
        b"COPY missing (a) FROM stdin;\n"
        b"CREATE TABLE sneaked_from_copy_rows (i int);\n"
        b"SELECT 'row ran as sql';\n"
        b"\\.\n"
        b"CREATE TABLE after_the_copy (a int);\nSELECT 1/0;\n"
    )
    psql, _ = tools.choose("psql", min_major=None)
    assert psql is not None
    outcome = restore.run_restore(
        fmt="plain", tool=psql, path=dump, scratch_db_dsn=fresh_db, jobs=1, no_owner=False, timeout=60
    )
    tables = _tables(fresh_db)
    assert "sneaked_from_copy_rows" not in tables, "a COPY row ran as SQL"
    assert {"ok", "after_the_copy"} <= tables
    tail = "\n".join(outcome.classifier.tail)
    assert (
        'relation "missing" does not exist' in tail and "<stdin>:11:" in tail and "division by zero" in tail
    ), tail
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM ok").fetchone() == (2,)
