"""The registry decides what is drillbook's: forged markers are reported, not dropped; the reaper takes only its own."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from drillbook.drills.backup_restore import scratch_registry as registry
from drillbook.drills.backup_restore.scratch import MARKER, PREFIX, ScratchGuard
from drillbook.errors import ScratchUnsafe

OLD = datetime.now(UTC) - timedelta(days=2)


def _v1_marker(drill: str) -> str:
    return MARKER + json.dumps({"drill": drill, "run_id": "x", "created_at": OLD.isoformat()})


@pytest.fixture
def createdb_role(pg):
    """A non-superuser role that may create databases: what an attacker with CREATEDB has."""
    from psycopg.conninfo import make_conninfo

    role = f"forger_{uuid.uuid4().hex[:6]}"
    pg.execute("postgres", f"create role {role} login createdb")
    yield make_conninfo(pg.admin_dsn, user=role)
    for (name,) in pg.execute(
        "postgres",
        "select datname from pg_database d join pg_roles r on r.oid = d.datdba where r.rolname = %s",
        (role,),
    ):
        pg.drop_database(name)
    pg.execute("postgres", f"drop role {role}")


def test_forged_marker_is_reported_never_dropped(pg, createdb_role):
    import psycopg

    guard = ScratchGuard(scratch_dsn=pg.admin_dsn)
    guard.reap(drill="shop_forge", max_age=60)  # the registry exists
    forged = PREFIX + "shop_forge_" + uuid.uuid4().hex[:6]
    with psycopg.connect(createdb_role, autocommit=True) as conn:
        conn.execute(f'create database "{forged}"')
        conn.execute(f"comment on database \"{forged}\" is '{_v1_marker('shop_forge')}'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # nor can it write the registry
            conn.execute(
                f"insert into {registry.TABLE} (datname, drill, run_id, created_at) "
                "values (%s, 'shop_forge', 'x', now())",
                (forged,),
            )
    report = guard.reap(drill="shop_forge", max_age=60)
    assert forged in report.unregistered and forged not in report.dropped
    report = guard.reap(drill=None, max_age=0, all_drills=True)
    assert forged in report.unregistered and forged not in report.dropped
    with pytest.raises(ScratchUnsafe, match="no row in drillbook's scratch registry"):
        guard.drop(forged)
    assert forged in pg.databases(PREFIX)
    info = guard.inspect(forged)
    assert info is not None and not info.marked


def test_legacy_marker_on_own_database_is_migrated_and_reaped(pg):
    guard = ScratchGuard(scratch_dsn=pg.admin_dsn)
    old = PREFIX + "shop_legacy_" + uuid.uuid4().hex[:6]
    pg.execute("postgres", f'create database "{old}"')  # as the scratch role itself, as drillbook 0.x did
    pg.execute("postgres", f"comment on database \"{old}\" is '{_v1_marker('shop_legacy')}'")
    report = guard.reap(drill="shop_legacy", max_age=6 * 3600)
    assert old in report.migrated and old in report.dropped
    assert old not in pg.databases(PREFIX)


def test_reaper_takes_only_its_own_unused_databases(pg):
    running = ScratchGuard(scratch_dsn=pg.admin_dsn)
    in_use = running.create(drill="shop_mine", run_id="running")  # a live run holds its lock
    killed = ScratchGuard(scratch_dsn=pg.admin_dsn)
    orphan = killed.create(drill="shop_mine", run_id="killed")
    killed.close()  # what SIGKILL does to the holding session
    other = ScratchGuard(scratch_dsn=pg.admin_dsn)
    theirs = other.create(drill="shop_theirs", run_id="killed")
    other.close()
    handed = ScratchGuard(scratch_dsn=pg.admin_dsn).create(drill="shop_mine", run_id="setup", hold=False)
    try:
        reaper = ScratchGuard(scratch_dsn=pg.admin_dsn)
        report = reaper.reap(drill="shop_mine", max_age=6 * 3600)
        assert report.dropped == [orphan]
        assert in_use in report.in_use
        left = set(pg.databases(PREFIX))
        assert {in_use, theirs, handed} <= left and orphan not in left
        # --all takes any registered, unused database, but only past max_age
        report = reaper.reap(drill=None, max_age=6 * 3600, all_drills=True)
        assert theirs not in report.dropped
        report = reaper.reap(
            drill=None, max_age=6 * 3600, all_drills=True, now=datetime.now(UTC) + timedelta(hours=7)
        )
        assert theirs in report.dropped and handed in report.dropped and in_use in report.in_use
        assert in_use in pg.databases(PREFIX)
    finally:
        running.drop(in_use)
        running.close()
        for name in (theirs, handed):
            pg.drop_database(name)


def test_registry_owned_by_someone_else_is_refused(pg, createdb_role):
    """A maintenance database where another role created the registry first: its rows could be forged."""
    import psycopg

    maint = pg.create_database("maint")
    try:
        pg.execute(maint, "revoke create on schema public from public")
        role = psycopg.conninfo.conninfo_to_dict(createdb_role)["user"]
        pg.execute("postgres", f'grant create on database "{maint}" to {role}')
        with psycopg.connect(
            psycopg.conninfo.make_conninfo(createdb_role, dbname=maint), autocommit=True
        ) as conn:
            registry.ensure(conn)  # the forger gets there first
        scratch = ScratchGuard(scratch_dsn=pg.dsn(maint))
        with pytest.raises(ScratchUnsafe, match="is owned by"):
            scratch.create(drill="shop_owner", run_id="x")
        pg.execute(maint, f"drop schema {registry.SCHEMA} cascade")
    finally:
        pg.drop_database(maint)


def test_cli_reap_all_and_refusals(pg, createdb_role, capsys):
    import psycopg

    from drillbook.cli import main

    killed = ScratchGuard(scratch_dsn=pg.admin_dsn)
    orphan = killed.create(drill="shop_cli_reap", run_id="killed")
    killed.close()
    forged = PREFIX + "shop_cli_forged_" + uuid.uuid4().hex[:6]
    with psycopg.connect(createdb_role, autocommit=True) as conn:
        conn.execute(f'create database "{forged}"')
    assert main(["scratch", "reap", "--scratch-dsn", pg.admin_dsn]) == 2
    assert "--all" in capsys.readouterr().err
    assert main(["scratch", "reap", "--all", "--scratch-dsn", pg.admin_dsn, "--max-age", "soon"]) == 2
    assert "--max-age" in capsys.readouterr().err
    assert main(["scratch", "reap", "--all", "--scratch-dsn", pg.admin_dsn, "--max-age", "1h"]) == 0
    assert orphan in pg.databases(PREFIX)  # younger than --max-age
    assert main(["scratch", "reap", "--all", "--scratch-dsn", pg.admin_dsn, "--max-age", "0s"]) == 0
    out = capsys.readouterr().out
    assert f"dropped    {orphan}" in out and f"not ours   {forged}" in out
    assert orphan not in pg.databases(PREFIX) and forged in pg.databases(PREFIX)


def test_a_role_that_cannot_create_the_registry_gets_a_clear_refusal(pg, createdb_role, dumps, tmp_path):
    from psycopg.conninfo import make_conninfo

    from drillbook.drills.backup_restore.drill import run_backup_restore
    from tests.backup_restore.conftest import codes, make_drill

    maint = pg.create_database("maint")  # owned by postgres: the drill role has no CREATE there
    try:
        drill = make_drill(str(dumps["custom"].parent), restore={"no_owner": True})
        result = run_backup_restore(
            drill=drill, scratch_dsn=make_conninfo(createdb_role, dbname=maint), work_dir=tmp_path / "w"
        )
        assert codes(result) == ["SCRATCH_UNSAFE"] and result.verdict.value == "ERROR"
        assert "GRANT CREATE ON DATABASE" in result.findings[0].message
        assert pg.databases(PREFIX + "shop_test") == []
    finally:
        pg.drop_database(maint)
