"""The scratch guard: refusals touch nothing; only marked scratch databases are ever dropped; the reaper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from drillbook.drills.backup_restore.scratch import MAX_NAME_BYTES, PREFIX, ScratchGuard, scratch_name
from drillbook.errors import ScratchUnsafe
from tests.backup_restore.conftest import codes, make_drill


def test_name_is_sanitised_bounded_and_unique():
    run = "scheduled__2026-11-22T03:30:00+00:00" * 3
    a = scratch_name("shop_" + "x" * 36, run)
    b = scratch_name("shop_" + "x" * 36, run)
    assert a != b
    assert a.startswith(PREFIX) and len(a.encode()) <= MAX_NAME_BYTES
    assert set(a) <= set("abcdefghijklmnopqrstuvwxyz0123456789_")
    assert scratch_name("Shop-Nightly", "manual__X Y").startswith(PREFIX + "shop_nightly_manual_x_y_")


def test_refuses_when_scratch_is_the_source(pg, shop, dumps, drill_runner):
    before = set(pg.databases(PREFIX))
    result = drill_runner(make_drill(str(dumps["custom"].parent)), scratch_dsn=shop.dsn, source_dsn=shop.dsn)
    assert codes(result) == ["SCRATCH_UNSAFE"]
    assert result.verdict.value == "ERROR"
    assert [p.name for p in result.phases] == ["scratch"]
    assert set(pg.databases(PREFIX)) == before, "a refusal must touch nothing"


def test_same_server_spelled_differently_is_still_refused(shop):
    other_spelling = shop.dsn.replace("127.0.0.1", "localhost") if "127.0.0.1" in shop.dsn else shop.dsn
    with pytest.raises(ScratchUnsafe):
        ScratchGuard(scratch_dsn=other_spelling, source_dsn=shop.dsn).check_server()


def test_refuses_to_drop_a_database_it_did_not_create(pg):
    guard = ScratchGuard(scratch_dsn=pg.admin_dsn)
    imposter = PREFIX + "shop_imposter"
    pg.execute("postgres", f'create database "{imposter}"')
    try:
        with pytest.raises(ScratchUnsafe, match="no row in drillbook's scratch registry"):
            guard.drop(imposter)
        assert imposter in pg.databases(PREFIX)
        with pytest.raises(ScratchUnsafe, match="does not start with"):
            guard.drop("postgres")
    finally:
        pg.drop_database(imposter)


def test_refuses_to_drop_the_source_even_with_the_prefix(pg):
    name = PREFIX + "shop_source_like"
    pg.execute("postgres", f'create database "{name}"')
    try:
        guard = ScratchGuard(scratch_dsn=pg.admin_dsn, source_dsn=pg.dsn(name))
        with pytest.raises(ScratchUnsafe, match="source database"):
            guard.drop(name)
        assert name in pg.databases(PREFIX)
    finally:
        pg.drop_database(name)


def test_handed_in_scratch_must_be_ours(pg, dumps, drill_runner):
    result = drill_runner(make_drill(str(dumps["custom"].parent)), scratch_db="postgres")
    assert codes(result) == ["SCRATCH_UNSAFE"]


def test_create_marks_and_drop_removes(pg):
    guard = ScratchGuard(scratch_dsn=pg.admin_dsn)
    name = guard.create(drill="shop_guard", run_id="manual__1")
    info = guard.inspect(name)
    assert info is not None and info.marked and info.drill == "shop_guard"
    assert guard.drop(name) is True
    assert guard.drop(name) is False  # already gone: not an error


def test_reaper_spares_a_young_handed_over_database(pg):
    """An Airflow setup task's database is unlocked until the work task adopts it: spared for the grace period."""
    guard = ScratchGuard(scratch_dsn=pg.admin_dsn)
    old = guard.create(
        drill="shop_reap", run_id="killed", now=datetime.now(UTC) - timedelta(hours=7), hold=False
    )
    young = guard.create(drill="shop_reap", run_id="running", hold=False)
    imposter = PREFIX + "shop_reap_unmarked"
    pg.execute("postgres", f'create database "{imposter}"')
    try:
        report = guard.reap(drill="shop_reap", max_age=6 * 3600)
        dropped = report.dropped
        assert imposter in report.unregistered
        assert old in dropped
        assert young not in dropped and imposter not in dropped
        assert young in pg.databases(PREFIX) and imposter in pg.databases(PREFIX)
    finally:
        guard.drop(young)
        pg.drop_database(imposter)
        pg.drop_database(old)


def test_teardown_after_a_failed_restore(pg, dumps, tmp_path, drill_runner):
    (tmp_path / "b").mkdir()
    data = dumps["custom"].read_bytes()
    (tmp_path / "b" / "shop.dump").write_bytes(data[: len(data) // 2])
    before = set(pg.databases(PREFIX))
    result = drill_runner(make_drill(str(tmp_path / "b")))
    assert result.verdict.value == "FAIL"
    assert next(p for p in result.phases if p.name == "restore").status == "failed"
    assert result.phases[-1].name == "teardown" and result.phases[-1].status == "ok"
    assert set(pg.databases(PREFIX)) == before


def test_reaped_names_become_info_findings(dumps, drill_runner):
    result = drill_runner(make_drill(str(dumps["custom"].parent)), reaped=["drillbook_scratch_shop_old_1"])
    assert "SCRATCH_REAPED" in codes(result)
    assert result.verdict.value == "PASS"


def test_handed_in_scratch_left_full_by_a_failed_try_is_reset(pg, dumps, drill_runner):
    guard = ScratchGuard(scratch_dsn=pg.admin_dsn)
    name = guard.create(
        drill="shop_retry", run_id="manual__retry", hold=False
    )  # as the Airflow setup task does
    try:
        pg.execute(name, "create table public.orders (id int)")  # what a first, crashed try left behind
        result = drill_runner(make_drill(str(dumps["custom"].parent)), scratch_db=name)
        assert result.verdict.value == "PASS", [(f.code, f.message) for f in result.findings]
        assert result.details["scratch_reset"] is True
        info = guard.inspect(name)
        assert info is not None and info.marked and info.drill == "shop_retry"  # same name, marker kept
    finally:
        guard.drop(name)


def test_unregistered_names_become_low_findings_and_the_drill_still_passes(dumps, drill_runner):
    result = drill_runner(
        make_drill(str(dumps["custom"].parent)), unregistered=["drillbook_scratch_shop_forged"]
    )
    found = [f for f in result.findings if f.code == "SCRATCH_UNREGISTERED"]
    assert [f.subject for f in found] == ["drillbook_scratch_shop_forged"] and found[
        0
    ].severity.value == "low"
    assert result.verdict.value == "PASS"
