"""Live dumps are read-only (a SELECT-only role suffices); tools match the archive's major version."""

from __future__ import annotations

import glob
import uuid
from pathlib import Path

import pytest

from drillbook.drills.backup_restore import tools
from drillbook.drills.backup_restore.archive import inspect_archive
from tests.backup_restore.conftest import codes, make_drill


@pytest.fixture
def readonly_source(pg, shop):
    """A DSN to the shop for a role that can only SELECT (and has a password, passed via the environment)."""
    role = f"drill_ro_{uuid.uuid4().hex[:6]}"
    password = f"pw-{uuid.uuid4().hex}"
    pg.execute("postgres", f"create role {role} login password '{password}'")
    pg.execute(shop.db, f"grant usage on schema public to {role}")
    pg.execute(shop.db, f"grant select on all tables in schema public to {role}")
    pg.execute(shop.db, f"grant select on all sequences in schema public to {role}")
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(shop.dsn)
    params.update(user=role, password=password)
    params.setdefault("host", "127.0.0.1")
    yield make_conninfo("", **params), password
    pg.execute(shop.db, f"drop owned by {role}")
    pg.execute("postgres", f"drop role {role}")


def test_live_dump_with_a_select_only_role(readonly_source, tmp_path, drill_runner, pg):
    dsn, password = readonly_source
    keep = tmp_path / "live"
    drill = make_drill(
        "live",
        source={"connection": "drillbook_source"},
        backup={"location": "live", "keep_live_dumps_in": str(keep)},
        schedule="@hourly",
    )
    result = drill_runner(drill, source_dsn=dsn)
    assert codes(result) == [], [(f.code, f.message) for f in result.findings]
    assert result.verdict.value == "PASS"
    kept = sorted(p.name for p in keep.iterdir())
    assert len(kept) == 2 and kept[0].endswith(".dump") and kept[1].endswith(".dump.sha256")
    assert password not in result.model_dump_json()


def test_live_dump_source_unreachable(tmp_path, drill_runner):
    drill = make_drill(
        "live",
        source={"connection": "drillbook_source"},
        backup={"location": "live", "keep_live_dumps_in": str(tmp_path / "live")},
        schedule="@hourly",
    )
    result = drill_runner(drill, source_dsn="host=127.0.0.1 port=1 dbname=shop user=nobody connect_timeout=2")
    assert codes(result) == ["SOURCE_UNREACHABLE"]
    assert result.verdict.value == "ERROR"


def test_archive_newer_than_every_pg_restore(dumps, tmp_path, drill_runner):
    data = bytearray(dumps["custom"].read_bytes())
    info = inspect_archive(dumps["custom"])
    old = info.pg_dump_version.encode()
    new = ("99." + "9" * (len(old) - 3)).encode() if len(old) >= 4 else b"99"[: len(old)]
    head = bytes(data[:400])
    at = head.rindex(old)  # the pg_dump version is the last string of the header
    data[at : at + len(old)] = new
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "shop.dump").write_bytes(bytes(data))
    result = drill_runner(make_drill(str(tmp_path / "b")))
    assert "VERSION_MISMATCH" in codes(result)
    assert result.verdict.value == "ERROR"


def test_configured_bin_dir_older_than_the_archive(dumps, drill_runner):
    dump_major = inspect_archive(dumps["custom"]).dump_major
    older = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if int(Path(d).parent.name) < dump_major]
    if not older:
        pytest.skip(f"no PostgreSQL client tools older than {dump_major} on this machine")
    result = drill_runner(make_drill(str(dumps["custom"].parent), restore={"bin_dir": older[0]}))
    assert "VERSION_MISMATCH" in codes(result)


def test_tool_choice_prefers_the_exact_major(pg):
    seen = tools.available("pg_restore", bin_dir=pg.bin_dir)
    assert seen
    major = seen[0].major
    chosen, _ = tools.choose("pg_restore", min_major=major, bin_dir=pg.bin_dir)
    assert chosen is not None and chosen.major == major
    none, _ = tools.choose("pg_restore", min_major=major + 1, bin_dir=pg.bin_dir)
    assert none is None


def test_scratch_password_travels_in_the_environment_not_argv(pg, dumps, tmp_path):
    """The restore's argv (kept as evidence) holds no password; neither does the result."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from drillbook.drills.backup_restore.drill import run_backup_restore

    role = f"drill_scratch_{uuid.uuid4().hex[:6]}"
    password = f"pw-{uuid.uuid4().hex}"
    pg.execute("postgres", f"create role {role} login createdb password '{password}'")
    # its own maintenance database, where it may create the scratch registry (docs/backup_restore.md)
    pg.execute("postgres", f'create database "{role}_maint" owner {role}')
    params = conninfo_to_dict(pg.admin_dsn)
    params.update(user=role, password=password, dbname=f"{role}_maint")
    try:
        drill = make_drill(str(dumps["custom"].parent), restore={"no_owner": True}, verify={"amcheck": False})
        result = run_backup_restore(
            drill=drill, scratch_dsn=make_conninfo("", **params), work_dir=tmp_path / "w"
        )
    finally:
        pg.drop_database(f"{role}_maint")
        pg.execute("postgres", f"drop role {role}")
    argv = result.details["restore"]["argv"]
    assert password not in argv and "password=" not in argv.lower() and "host" not in argv
    assert password not in result.model_dump_json()
    assert result.verdict.value == "PASS", [(f.code, f.message) for f in result.findings]
