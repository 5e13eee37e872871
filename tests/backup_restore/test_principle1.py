"""Principle 1 in the backup-restore drill: a check that could not run never reports PASS.

Each defect the review confirmed has a red case (the check cannot run -> an exact
blocking code, verdict ERROR) next to the healthy case that stays green.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from pydantic import ValidationError

from drillbook.drills.backup_restore import restore, tools
from drillbook.drills.backup_restore.catalogue import VerifySpec
from drillbook.drills.backup_restore.locate import classify_dump_failure
from tests.backup_restore import test_verify_integrity as integ
from tests.backup_restore import test_verify_ladder as base
from tests.backup_restore.conftest import make_drill
from tests.backup_restore.test_verify_ladder import codes, ladder, phase, sql

shop_template = base.shop_template
shop_db = base.shop_db
amcheck_shop = integ.amcheck_shop


@pytest.fixture
def no_create_role(pg, shop_db):
    """DSN of the shop for a role that can read everything but may not CREATE EXTENSION."""
    from psycopg.conninfo import make_conninfo

    role = f"p1role_{uuid.uuid4().hex[:8]}"
    pg.execute("postgres", f"create role {role} login")
    pg.execute("postgres", f"grant pg_read_all_data to {role}")
    yield make_conninfo(shop_db, user=role)
    pg.execute("postgres", f"drop role {role}")


# --- 1. amcheck: auto / true / false -------------------------------------------------------------
def test_amcheck_setting_accepts_auto_and_booleans():
    assert VerifySpec().amcheck == "auto"
    assert VerifySpec.model_validate({"amcheck": True}).amcheck is True
    assert VerifySpec.model_validate({"amcheck": False}).amcheck is False
    assert VerifySpec.model_validate({"amcheck": "auto"}).amcheck == "auto"
    with pytest.raises(ValidationError):
        VerifySpec.model_validate({"amcheck": "sometimes"})


def test_required_amcheck_that_cannot_run_is_an_error(no_create_role):
    result = ladder(no_create_role, amcheck=True)
    assert codes(result) == ["AMCHECK_UNAVAILABLE"], [(f.code, f.message) for f in result.findings]
    assert result.verdict.value == "ERROR"
    assert result.details["verify"]["integrity"]["indexes_checked"] == 0
    assert phase(result, "verify.integrity").status == "failed"


def test_auto_amcheck_that_cannot_run_is_said_not_failed(no_create_role):
    result = ladder(no_create_role)  # default: auto
    assert codes(result) == [] and result.verdict.value == "PASS"
    assert "unavailable" in result.details["verify"]["integrity"]["amcheck"]
    assert "unavailable" in phase(result, "verify.integrity").detail


@pytest.fixture
def locked_orders(amcheck_shop, monkeypatch):
    """The shop with public.orders held ACCESS EXCLUSIVE by another session; the ladder waits 1 s for locks."""
    from drillbook.drills.backup_restore.verify import ladder as ladder_mod

    monkeypatch.setattr(ladder_mod, "LOCK_TIMEOUT_S", 1)
    holder = psycopg.connect(amcheck_shop)
    holder.execute("lock table public.orders in access exclusive mode")
    yield amcheck_shop
    holder.rollback()
    holder.close()


def _integrity_only(dsn: str, amcheck: object):
    """Run just the integrity rung (the other rungs would wait on the same lock)."""
    from drillbook.drills.backup_restore.verify import integrity
    from drillbook.drills.backup_restore.verify.ladder import Ladder, ScratchSession
    from drillbook.drills.base import ResultBuilder

    builder = ResultBuilder(kind="backup_restore", drill="p1", target="scratch")
    session = ScratchSession(dsn=dsn)
    try:
        lad = Ladder(
            builder=builder,
            session=session,
            verify=VerifySpec.model_validate({"amcheck": amcheck}),
            base_dir=base.INCLUDE,
            previous=None,
        )
        facts = integrity.check_indexes(lad)
    finally:
        session.close()
    return builder, facts


def test_index_check_blocked_by_a_lock_is_named_and_blocks_when_required(locked_orders):
    builder, facts = _integrity_only(locked_orders, True)
    unchecked = [f for f in builder.findings if f.code == "INDEX_UNCHECKED"]
    assert [f.code for f in builder.findings] == ["INDEX_UNCHECKED"] * len(unchecked) and unchecked
    assert all(f.subject.startswith("public.orders") for f in unchecked)
    assert all(f.detail["sqlstate"] == "55P03" for f in unchecked)  # lock_not_available
    assert len(facts["indexes_unchecked"]) == len(unchecked)
    assert facts["indexes_checked"] == facts["indexes"] - len(unchecked)
    assert builder.finish().verdict.value == "ERROR"


def test_index_check_blocked_by_a_lock_is_kept_in_details_with_auto(locked_orders):
    builder, facts = _integrity_only(locked_orders, "auto")
    assert builder.findings == []
    assert facts["indexes_unchecked"] and all(
        u.startswith("public.orders") for u in facts["indexes_unchecked"]
    )
    assert facts["indexes_checked"] + len(facts["indexes_unchecked"]) == facts["indexes"]


def test_required_amcheck_on_healthy_indexes_passes(amcheck_shop):
    result = ladder(amcheck_shop, amcheck=True)
    assert codes(result) == [] and result.verdict.value == "PASS"
    facts = result.details["verify"]["integrity"]
    assert facts["indexes_checked"] == facts["indexes"] >= 9


# --- 2. data-quality suites that cannot run --------------------------------------------------------
def test_configured_suites_without_the_engine_are_an_error(shop_db, monkeypatch):
    monkeypatch.setitem(sys.modules, "drillbook.drills.data_quality", None)  # import -> ImportError
    result = ladder(shop_db, amcheck=False, suites=["orders", "customers"])
    assert codes(result) == ["DQ_VALIDATION_ERROR"]
    assert result.verdict.value == "ERROR"
    assert "'orders'" in result.findings[0].message and "'customers'" in result.findings[0].message
    assert phase(result, "verify.quality").status == "failed"


def test_no_suites_is_not_configured_and_green(shop_db):
    result = ladder(shop_db, amcheck=False)
    assert phase(result, "verify.quality").status == "not configured" and result.verdict.value == "PASS"


# --- 3. live dumps that cannot be taken ------------------------------------------------------------
def test_no_pg_dump_new_enough_is_version_mismatch(tmp_path, drill_runner, shop):
    empty = tmp_path / "bin"
    empty.mkdir()
    drill = make_drill(
        "live",
        source={"connection": "drillbook_source"},
        schedule="@hourly",
        backup={"location": "live", "keep_live_dumps_in": str(tmp_path / "live")},
        restore={"bin_dir": str(empty)},
    )
    result = drill_runner(drill, source_dsn=shop.dsn)
    assert codes(result) == ["VERSION_MISMATCH"], [(f.code, f.message) for f in result.findings]
    assert result.verdict.value == "ERROR"


def test_pg_dump_without_read_permission_is_source_unreachable(pg, shop, tmp_path, drill_runner):
    from psycopg.conninfo import make_conninfo

    role = f"p1nosel_{uuid.uuid4().hex[:6]}"
    pg.execute("postgres", f"create role {role} login")
    try:
        drill = make_drill(
            "live",
            source={"connection": "drillbook_source"},
            schedule="@hourly",
            backup={"location": "live", "keep_live_dumps_in": str(tmp_path / "live")},
        )
        result = drill_runner(drill, source_dsn=make_conninfo(shop.dsn, user=role))
    finally:
        pg.execute("postgres", f"drop role {role}")
    assert codes(result) == ["SOURCE_UNREACHABLE"], [(f.code, f.message) for f in result.findings]
    assert "permission denied" in result.findings[0].message
    assert result.verdict.value == "ERROR"
    assert list((tmp_path / "live").glob("*.dump")) == []  # no half-written dump is kept


@pytest.mark.parametrize(
    ("stderr", "code"),
    [
        (
            'pg_dump: error: connection to server at "127.0.0.1", port 1 failed: Connection refused',
            "SOURCE_UNREACHABLE",
        ),
        ('pg_dump: error: FATAL:  password authentication failed for user "x"', "SOURCE_UNREACHABLE"),
        ("pg_dump: error: query failed: ERROR:  permission denied for table orders", "SOURCE_UNREACHABLE"),
        ("pg_dump: error: could not write to output file: No space left on device", "LIVE_DUMP_FAILED"),
    ],
)
def test_pg_dump_failures_are_classified(stderr, code):
    assert classify_dump_failure(stderr) == code


# --- 4. semantics: did not hold vs could not run ----------------------------------------------------
def test_check_that_cannot_run_is_semantics_error_and_not_counted(pg, shop_db):
    from drillbook.settings import DrillTimeouts

    checks = [
        {"name": "syntax", "sql": "selec 1", "expect": "== 1"},
        {"name": "writes", "sql": "delete from public.order_items returning 1", "expect": "== 1"},
        {"name": "slow", "sql": "select 1 from pg_sleep(3)", "expect": "== 1"},
    ]
    result = ladder(shop_db, amcheck=False, checks=checks, timeouts=DrillTimeouts(check=1))
    assert codes(result) == ["SEMANTICS_ERROR"] * 3
    states = {f.subject: f.detail["sqlstate"] for f in result.findings}
    assert states == {"syntax": "42601", "writes": "25006", "slow": "57014"}
    assert result.verdict.value == "ERROR"
    outcomes = result.details["verify"]["semantics"]["checks"]
    assert [o["holds"] for o in outcomes] == [None, None, None]
    assert phase(result, "verify.semantics").detail.startswith("0/0 checks hold; 3 could not run")
    assert sql(shop_db, "select count(*) > 0 from public.order_items") == [(True,)]


def test_check_without_permission_is_semantics_error(pg, shop_db):
    from psycopg.conninfo import make_conninfo

    role = f"p1read_{uuid.uuid4().hex[:6]}"
    pg.execute("postgres", f"create role {role} login")
    pg.execute("postgres", f"grant pg_read_all_data to {role}")
    try:
        result = ladder(
            make_conninfo(shop_db, user=role),
            amcheck=False,
            checks=[
                {"name": "reads a file", "sql": "select length(pg_read_file('PG_VERSION'))", "expect": "> 0"},
                *base.HEALTHY_CHECKS,
            ],
        )
    finally:
        pg.execute("postgres", f"drop role {role}")
    assert codes(result) == ["SEMANTICS_ERROR"], [(f.code, f.message) for f in result.findings]
    assert result.findings[0].detail["sqlstate"] == "42501" and result.verdict.value == "ERROR"


def test_check_on_a_table_the_restore_lacks_did_not_hold(shop_db):
    """42P01: the restored data lacks the table, which is a restore that did not hold (FAIL, counted)."""
    result = ladder(
        shop_db,
        amcheck=False,
        checks=[
            {"name": "refunds exist", "sql": "select count(*) from public.refunds", "expect": "> 0"},
            *base.HEALTHY_CHECKS,
        ],
    )
    assert codes(result) == ["SEMANTICS_FAILED"]
    assert "lacks a table" in result.findings[0].message and result.verdict.value == "FAIL"
    assert [o["holds"] for o in result.details["verify"]["semantics"]["checks"]] == [False, True, True]


# --- 5. pg_restore -l is bounded ---------------------------------------------------------------------
def test_toc_listing_that_hangs_is_bounded(pg, tmp_path):
    import os

    from drillbook.drills.backup_restore import drill as drill_mod
    from drillbook.drills.backup_restore.locate import Artefact
    from drillbook.drills.backup_restore.restore_phases import list_toc
    from drillbook.drills.base import ResultBuilder
    from drillbook.errors import DrillAborted
    from drillbook.settings import DrillTimeouts

    fifo = tmp_path / "stuck.dump"
    os.mkfifo(fifo)  # nobody ever writes: pg_restore -l blocks opening it
    builder = ResultBuilder(kind="backup_restore", drill="p1", target="scratch")
    run = drill_mod._Drill(
        builder,
        drill=make_drill(str(tmp_path)),
        scratch_dsn=pg.admin_dsn,
        source_dsn=None,
        s3_client=None,
        work_dir=tmp_path,
        base_dir=None,
        run_id="r",
        start=datetime.now(UTC),
        timeouts=DrillTimeouts(toc=1),
    )
    run.tool, _ = tools.choose("pg_restore", min_major=None, bin_dir=pg.bin_dir)
    art = Artefact(uri=str(fifo), name=fifo.name, modified=datetime.now(UTC), path=fifo)
    started = time.monotonic()
    with pytest.raises(DrillAborted):
        list_toc(run, fifo, art)
    assert time.monotonic() - started < 10
    assert [f.code for f in builder.findings] == ["ARCHIVE_UNREADABLE"]


# --- 6. the restore timeout bounds pg_restore -j and its workers -----------------------------------
@pytest.fixture
def blocked_restore(pg, tmp_path):
    """A -Fc dump of one table, and a target whose copy of that table is locked by another session."""
    src = pg.create_database("p1src")
    dst = pg.create_database("p1dst")
    pg.execute(src, "create table public.t (a int); insert into public.t select generate_series(1, 1000)")
    dump = tmp_path / "t.dump"
    subprocess.run(
        [str(Path(pg.bin_dir) / "pg_dump"), "-Fc", "-f", str(dump), "-d", pg.dsn(src)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pg.execute(dst, "create table public.t (a int)")
    holder = psycopg.connect(pg.dsn(dst))
    holder.execute("lock table public.t in access exclusive mode")
    release = threading.Timer(20, holder.rollback)  # bound the test even if the fix regresses
    release.start()
    yield dump, pg.dsn(dst)
    release.cancel()
    holder.rollback()
    holder.close()
    pg.execute("postgres", f'drop database if exists "{src}" with (force)')
    pg.execute("postgres", f'drop database if exists "{dst}" with (force)')


def test_restore_timeout_kills_the_parallel_workers(pg, blocked_restore):
    dump, dst_dsn = blocked_restore
    tool, _ = tools.choose("pg_restore", min_major=None, bin_dir=pg.bin_dir)
    assert tool is not None
    outcome = restore.run_restore(
        fmt="custom", tool=tool, path=dump, scratch_db_dsn=dst_dsn, jobs=2, no_owner=True, timeout=1
    )
    assert outcome.timed_out and outcome.fatal
    assert outcome.seconds < 10, f"the timeout of 1 s did not bound the restore: {outcome.seconds:.1f} s"


def test_restore_within_its_timeout_is_not_killed(pg, blocked_restore):
    """Green: the same dump into an empty database finishes well within the timeout."""
    dump, _ = blocked_restore
    fresh = pg.create_database("p1ok")
    try:
        tool, _ = tools.choose("pg_restore", min_major=None, bin_dir=pg.bin_dir)
        assert tool is not None
        outcome = restore.run_restore(
            fmt="custom",
            tool=tool,
            path=dump,
            scratch_db_dsn=pg.dsn(fresh),
            jobs=2,
            no_owner=True,
            timeout=60,
        )
    finally:
        rows = pg.execute(fresh, "select count(*) from public.t")
        pg.drop_database(fresh)
    assert not outcome.timed_out and not outcome.fatal and outcome.exit_code == 0
    assert rows == [(1000,)]
