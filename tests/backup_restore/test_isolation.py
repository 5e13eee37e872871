"""Issue 10, items 1-2: the `victim` scenario. A hostile or cluster-scope dump changes nothing outside its scratch database.

The shared scratch server is the session's real PostgreSQL; its other databases
(the real `victim`, the shop, ...) are checksummed before and after each drill:
rows (md5 of each table's ordered rows), sequence values, and the lists of
databases and roles. The scratch role is a non-superuser with CREATEDB, as the
docs recommend; marker files would land outside the work directory.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from drillbook.drills.backup_restore import restore, tools
from drillbook.drills.backup_restore.scratch import PREFIX, ScratchGuard
from drillbook.resources.pg import parse, tool_env, with_dbname
from tests.backup_restore.conftest import codes, make_drill, pg_dump

SCRATCH_ROLE = "drillbook_iso_scratch"
SCRATCH_MAINT = "drillbook_iso_maint"  # the scratch role's own maintenance database: its registry lives there
VICTIM_VERIFY = {"min_rows": {"public.events": 11, "public.items": 3}, "rpo_probe": None}


def _keyword_dsn(pg, user: str, dbname: str = "postgres") -> str:
    p = parse(pg.admin_dsn)
    return f"host={p.get('host', '')} port={p.get('port', '5432')} user={user} dbname={dbname}"


@pytest.fixture(scope="module")
def victim(pg):
    """The real `victim` database (a table without a primary key, a sequence at 150) and two roles."""
    for db in ("victim", "victim2"):
        pg.drop_database(db)
    for role in ("victim_app", "victim_ro", SCRATCH_ROLE):
        pg.execute("postgres", f"DROP ROLE IF EXISTS {role}")
    pg.execute("postgres", "CREATE ROLE victim_app LOGIN PASSWORD 'victim-app-secret'")
    pg.execute("postgres", "CREATE ROLE victim_ro")
    pg.execute("postgres", "GRANT victim_ro TO victim_app")
    pg.execute("postgres", f"CREATE ROLE {SCRATCH_ROLE} LOGIN CREATEDB")
    pg.drop_database(SCRATCH_MAINT)
    pg.execute("postgres", f"CREATE DATABASE {SCRATCH_MAINT} OWNER {SCRATCH_ROLE}")
    for db in ("victim", "victim2"):
        pg.execute("postgres", f"CREATE DATABASE {db} OWNER victim_app")
        pg.execute(
            db, "CREATE TABLE events (id int, note text)"
        )  # no primary key: appends would go unnoticed
        pg.execute(db, "INSERT INTO events SELECT g, 'n' || g FROM generate_series(1, 11) g")
        pg.execute(db, "CREATE TABLE items (id serial PRIMARY KEY, name text)")
        pg.execute(db, "INSERT INTO items (name) VALUES ('a'), ('b'), ('c')")
        pg.execute(db, "SELECT setval('items_id_seq', 150)")
        pg.execute(db, "ALTER TABLE events OWNER TO victim_app; ALTER TABLE items OWNER TO victim_app")
    yield
    for db in ("victim", "victim2", SCRATCH_MAINT):
        pg.drop_database(db)
    for role in ("victim_app", "victim_ro", SCRATCH_ROLE):
        pg.execute("postgres", f"DROP ROLE IF EXISTS {role}")


def checksum(pg) -> dict[str, object]:
    """Every non-scratch database's rows and sequences, plus the server's databases and roles."""
    out: dict[str, object] = {
        "databases": sorted(
            r[0]
            for r in pg.execute("postgres", "select datname from pg_database")
            if not r[0].startswith(PREFIX)
        ),
        "roles": sorted(
            tuple(map(str, r))
            for r in pg.execute(
                "postgres", "select rolname, rolsuper, rolcreatedb, rolcanlogin from pg_roles"
            )
        ),
        "members": sorted(
            pg.execute("postgres", "select roleid::regrole::text, member::regrole::text from pg_auth_members")
        ),
        "settings": pg.execute("postgres", "select current_setting('work_mem')"),
    }
    for db in out["databases"]:  # type: ignore[union-attr]
        if db.startswith("template"):
            continue
        tables = pg.execute(
            db, "select format('%I.%I', schemaname, relname) from pg_stat_user_tables order by 1"
        )
        for (table,) in tables:
            if (
                table == "drillbook.scratch_databases"
            ):  # the drill's own registry of what it created (scratch.py)
                continue
            out[f"{db}:{table}"] = pg.execute(
                db, f"select md5(coalesce(string_agg(t::text, E'\\n' order by t::text), '')) from {table} t"
            )
        for (seq,) in pg.execute(
            db, "select format('%I.%I', schemaname, sequencename) from pg_sequences order by 1"
        ):
            out[f"{db}:{seq}"] = pg.execute(db, f"select last_value, is_called from {seq}")
    return out


@pytest.fixture
def scratch_dsn(pg, victim) -> str:
    return _keyword_dsn(pg, SCRATCH_ROLE, SCRATCH_MAINT)


@pytest.fixture
def outside(tmp_path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


def _hostile(dumps, tmp_path: Path, name: str, inject: str, *, where: str = "CREATE TABLE") -> Path:
    """The shop's healthy plain dump with ``inject`` before its first ``where``."""
    text = dumps["plain"].read_text()
    i = text.index(where)
    folder = tmp_path / f"dump_{name}"
    folder.mkdir()
    path = folder / "shop.sql"
    path.write_text(text[:i] + inject + "\n" + text[i:])
    return path


def _run_and_check(pg, drill_runner, scratch_dsn, drill, outside: Path, tmp_path: Path):
    before = checksum(pg)
    scratch_before = set(pg.databases(PREFIX))
    result = drill_runner(drill, scratch_dsn=scratch_dsn, work_dir=tmp_path / "work")
    assert checksum(pg) == before, "the drill changed something outside its scratch database"
    assert set(pg.databases(PREFIX)) == scratch_before
    assert list(outside.iterdir()) == [], "a file was created outside the work directory"
    assert result.verdict.value != "PASS"
    return result


def test_pg_dump_create_is_refused_on_a_shared_server(
    pg, victim, scratch_dsn, tmp_path, outside, drill_runner
):
    path = pg_dump(
        pg, pg.dsn("victim"), (tmp_path / "c").mkdir() or tmp_path / "c" / "victim.sql", "-Fp", "-C"
    )
    drill = make_drill(str(path.parent), verify=VICTIM_VERIFY)
    result = _run_and_check(pg, drill_runner, scratch_dsn, drill, outside, tmp_path)
    finding = next(f for f in result.findings if f.code == "DUMP_LEAVES_DATABASE")
    assert "creates and connects to database 'victim'" in finding.message
    assert result.verdict.value == "ERROR"
    assert "restore" not in [p.name for p in result.phases], "refused before psql started"


@pytest.fixture
def dumpall(pg, victim, tmp_path) -> Path:
    """pg_dumpall of the test server: roles (one with a password) and the two victim databases."""
    others = [
        d for d in pg.databases() if d not in ("victim", "victim2", "postgres", "template1", "template0")
    ]
    out = tmp_path / "all" / "cluster.sql"
    out.parent.mkdir()
    args = [str(Path(pg.bin_dir) / "pg_dumpall"), "-f", str(out)]
    for db in others:
        args += ["--exclude-database", db]
    subprocess.run(args, env=tool_env(pg.admin_dsn), check=True, capture_output=True, timeout=120)
    return out


def test_pg_dumpall_is_refused_on_a_shared_server(pg, dumpall, scratch_dsn, tmp_path, outside, drill_runner):
    drill = make_drill(str(dumpall.parent), verify=VICTIM_VERIFY)
    result = _run_and_check(pg, drill_runner, scratch_dsn, drill, outside, tmp_path)
    finding = next(f for f in result.findings if f.code == "DUMP_LEAVES_DATABASE")
    assert "this is a cluster dump (pg_dumpall)" in finding.message
    assert "victim-app-secret" not in str(result.model_dump()) and "SCRAM" not in str(result.model_dump())


def test_pg_dumpall_restores_fully_into_an_ephemeral_cluster_and_passes(pg, dumpall, tmp_path, drill_runner):
    drill = make_drill(
        str(dumpall.parent), verify=VICTIM_VERIFY, restore={"target": "ephemeral", "database": "victim"}
    )
    before = checksum(pg)
    clusters = set(Path("/tmp").glob("drillbook-ephemeral-*"))
    result = drill_runner(drill, work_dir=tmp_path / "work")
    assert result.verdict.value == "PASS", [(f.code, f.message, f.detail) for f in result.findings]
    assert checksum(pg) == before
    assert result.details["restore"]["exit_code"] == 0
    assert set(Path("/tmp").glob("drillbook-ephemeral-*")) <= clusters, (
        "the ephemeral cluster was not removed"
    )
    assert (
        next(p for p in result.phases if p.name == "teardown").detail
        == "stopped and removed the ephemeral cluster"
    )


def test_pg_dumpall_in_an_ephemeral_cluster_needs_the_database_to_verify(pg, dumpall, tmp_path, drill_runner):
    drill = make_drill(str(dumpall.parent), verify=VICTIM_VERIFY, restore={"target": "ephemeral"})
    result = drill_runner(drill, work_dir=tmp_path / "work")
    assert "CONFIG_INVALID" in codes(result) and result.verdict.value == "ERROR"
    assert "restore.database" in next(f.message for f in result.findings if f.code == "CONFIG_INVALID")


HOSTILE = {
    "shell": "\\! touch {outside}/marker1",
    "output": "\\o {outside}/marker2",
    "copy_from_program": "COPY public.customers FROM PROGRAM 'touch {outside}/marker3';",
    "copy_to_program": "COPY (select 1) TO PROGRAM 'touch {outside}/marker4';",
    "alter_system": "ALTER SYSTEM SET work_mem = '77MB';",
    "connect": "\\connect victim",
    "create_role": "CREATE ROLE drillbook_iso_intruder SUPERUSER;",
    "after_semicolon": "SELECT 1; \\! touch {outside}/marker5",
    "in_do_block": "DO $x$ BEGIN EXECUTE 'COPY (select 1) TO PROGRAM ''touch {outside}/marker6'''; END $x$;",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_plain_dump_is_refused_and_touches_nothing(
    pg, victim, dumps, scratch_dsn, tmp_path, outside, drill_runner, name
):
    path = _hostile(dumps, tmp_path, name, HOSTILE[name].format(outside=outside))
    result = _run_and_check(pg, drill_runner, scratch_dsn, make_drill(str(path.parent)), outside, tmp_path)
    finding = next(f for f in result.findings if f.code == "DUMP_LEAVES_DATABASE")
    assert finding.detail["line"] > 1 and "line" in finding.message


@pytest.mark.parametrize("name", ["shell", "output", "copy_to_program", "alter_system"])
def test_the_ephemeral_cluster_still_refuses_escapes(
    pg, victim, dumps, tmp_path, outside, drill_runner, name
):
    path = _hostile(dumps, tmp_path, name, HOSTILE[name].format(outside=outside))
    drill = make_drill(str(path.parent), restore={"target": "ephemeral"})
    result = drill_runner(drill, work_dir=tmp_path / "work")
    assert "DUMP_LEAVES_DATABASE" in codes(result) and result.verdict.value == "ERROR"
    assert list(outside.iterdir()) == []


def test_the_feed_filter_stops_at_the_first_forbidden_command_even_without_the_prescan(
    pg, victim, dumps, tmp_path, outside
):
    """The file may change between the pre-scan and the feed: psql still never sees the command."""
    path = _hostile(
        dumps,
        tmp_path,
        "feed",
        f"\\! touch {outside}/marker\nCREATE TABLE public.after_the_marker (a int);",
        where="CREATE TABLE public.customers",
    )
    guard = ScratchGuard(scratch_dsn=pg.admin_dsn)
    db = guard.create(drill="iso_feed", run_id="t")
    try:
        psql, _ = tools.choose("psql", min_major=16)
        assert psql is not None
        outcome = restore.run_restore(
            fmt="plain",
            tool=psql,
            path=path,
            scratch_db_dsn=with_dbname(pg.admin_dsn, db),
            jobs=1,
            no_owner=False,
            timeout=120,
        )
        assert outcome.refusal is not None and outcome.refusal.statement.startswith("\\! touch")
        assert outcome.fatal
        assert list(outside.iterdir()) == []
        tables = pg.execute(
            db, "select relname from pg_class where relname in ('after_the_marker', 'customers')"
        )
        assert tables == [], "nothing after the refused command reached psql"
    finally:
        guard.drop(db)


def test_side_effect_audit_reports_what_the_drill_changed_and_drops_nothing(
    pg, victim, dumps, scratch_dsn, tmp_path, drill_runner
):
    """A role created by dynamic SQL (which no reading can catch) is reported, and left for a human."""
    inject = "DO $x$ BEGIN EXECUTE 'CREATE ' || 'ROLE drillbook_iso_sneaky'; END $x$;"
    path = _hostile(dumps, tmp_path, "sneaky", inject)
    pg.execute("postgres", "ALTER ROLE drillbook_iso_scratch CREATEROLE")
    try:
        result = drill_runner(
            make_drill(str(path.parent)), scratch_dsn=scratch_dsn, work_dir=tmp_path / "work"
        )
        finding = next(f for f in result.findings if f.code == "SCRATCH_SIDE_EFFECT")
        assert "drillbook_iso_sneaky" in finding.message and result.verdict.value == "FAIL"
        assert pg.execute("postgres", "select 1 from pg_roles where rolname = 'drillbook_iso_sneaky'") == [
            (1,)
        ]
        assert next(p for p in result.phases if p.name == "audit").status == "failed"
    finally:
        pg.execute("postgres", "DROP ROLE IF EXISTS drillbook_iso_sneaky")
        pg.execute("postgres", "ALTER ROLE drillbook_iso_scratch NOCREATEROLE")


def test_a_healthy_dump_passes_the_audit_and_notes_a_superuser_scratch_role(pg, dumps, drill_runner):
    result = drill_runner(make_drill(str(dumps["plain"].parent)))
    assert result.verdict.value == "PASS", [(f.code, f.message) for f in result.findings]
    assert next(p for p in result.phases if p.name == "audit").status == "ok"
    assert result.details["scratch_role_superuser"] is True
    assert "superuser" in next(p for p in result.phases if p.name == "scratch").detail


def test_a_custom_archive_whose_schema_leaves_the_database_is_refused(
    pg, variant, scratch_dsn, tmp_path, outside, drill_runner
):
    def mutate(dsn):
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE FUNCTION public.escape() RETURNS void LANGUAGE plpgsql AS "
                "$$ BEGIN COPY (select 1) TO PROGRAM 'true'; END $$"
            )

    path = variant(mutate)
    result = _run_and_check(pg, drill_runner, scratch_dsn, make_drill(str(path.parent)), outside, tmp_path)
    assert "DUMP_LEAVES_DATABASE" in codes(result)


def test_restore_database_without_the_ephemeral_target_is_a_catalogue_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"applies only to restore\.target 'ephemeral'"):
        make_drill("/tmp/x", restore={"database": "victim"})
    with pytest.raises(ValidationError, match="target"):
        make_drill("/tmp/x", restore={"target": "private"})


def test_pg_dump_create_restores_into_an_ephemeral_cluster_and_verifies_the_database_it_creates(
    pg, victim, tmp_path, drill_runner
):
    folder = tmp_path / "c"
    folder.mkdir()
    path = pg_dump(pg, pg.dsn("victim"), folder / "victim.sql", "-Fp", "-C")
    drill = make_drill(str(folder), verify=VICTIM_VERIFY, restore={"target": "ephemeral"})
    before = checksum(pg)
    result = drill_runner(drill, work_dir=tmp_path / "work")
    assert result.verdict.value == "PASS", [(f.code, f.message) for f in result.findings]
    assert [f.subject for f in result.findings if f.code == "ROLE_ABSENT"] == [
        "victim_app"
    ]  # roles live in pg_dumpall
    assert checksum(pg) == before
    assert path.exists()


def test_a_custom_archive_restores_into_a_scratch_database_of_an_ephemeral_cluster(
    dumps, tmp_path, drill_runner
):
    result = drill_runner(
        make_drill(str(dumps["custom"].parent), restore={"target": "ephemeral"}), work_dir=tmp_path / "w"
    )
    assert result.verdict.value == "PASS", [(f.code, f.message) for f in result.findings]
    assert result.measurements.counts["dump_statements_judged"] > 10


def test_a_custom_archive_that_escapes_is_refused_in_an_ephemeral_cluster_too(
    variant, tmp_path, drill_runner
):
    def mutate(dsn):
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE FUNCTION public.escape() RETURNS void LANGUAGE plpgsql AS "
                "$$ BEGIN COPY (select 1) TO PROGRAM 'true'; END $$"
            )

    path = variant(mutate)
    result = drill_runner(
        make_drill(str(path.parent), restore={"target": "ephemeral"}), work_dir=tmp_path / "w"
    )
    assert "DUMP_LEAVES_DATABASE" in codes(result) and result.verdict.value == "ERROR"
    assert "restore" not in [p.name for p in result.phases]
