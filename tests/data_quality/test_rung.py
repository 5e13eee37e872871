"""The shipped ``orders`` suite on the demo shop, and ``validate_into`` as the backup-restore rung uses it."""

from __future__ import annotations

import psycopg
import pytest

from tests.data_quality.conftest import SHIPPED_SUITES


def builder():
    from drillbook.drills.base import ResultBuilder

    return ResultBuilder(kind="backup_restore", drill="shop_nightly", target="scratch")


def test_shipped_suite_passes_on_the_demo_shop(shop_db):
    from drillbook.drills.data_quality import run_data_quality

    result = run_data_quality(
        drill_name="shop_orders_quality",
        dsn=shop_db,
        table="public.orders",
        suite="orders",
        suites_dir=SHIPPED_SUITES,
    )
    assert result.verdict.value == "PASS", result.findings
    assert result.measurements.counts["checks_run"] >= 8


def test_validate_into_adds_phases_checks_and_details(shop_db):
    from drillbook.drills.data_quality import validate_into

    b = builder()
    validate_into(b, dsn=shop_db, suite="orders", suites_dir=SHIPPED_SUITES)  # table from the suite's meta
    assert [p.name for p in b.phases] == [
        "dq orders: load suite",
        "dq orders: inspect target",
        "dq orders: validate",
        "dq orders: evaluate",
    ]
    assert b.findings == []
    assert b.checks_run == b.measurements.counts["dq_expectations"] == 11
    assert b.details["data_quality"][0]["target"] == "public.orders"
    assert b.finish().verdict.value == "PASS"


@pytest.fixture
def broken_shop(pg):
    """A restored copy of the shop whose data violates the suite: too few orders, a foreign status."""
    from drillbook.sample.shop import seed_shop

    name = pg.create_database("dqbroken")
    dsn = pg.dsn(name)
    seed_shop(dsn, orders=600)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("alter table public.orders drop constraint orders_status_check")
        conn.execute("update public.orders set status = 'lost' where id = 5")
    try:
        yield dsn
    finally:
        pg.drop_database(name)


def test_validate_into_fails_the_calling_drill_on_bad_data(broken_shop):
    from drillbook.drills.data_quality import validate_into

    b = builder()
    validate_into(b, dsn=broken_shop, suite="orders", suites_dir=SHIPPED_SUITES)
    failed = sorted(f.detail["type"] for f in b.findings)
    assert failed == ["expect_column_values_to_be_in_set", "expect_table_row_count_to_be_between"]
    assert {f.code for f in b.findings} == {"DQ_EXPECTATION_FAILED"}
    assert b.finish().verdict.value == "FAIL"


def test_validate_into_never_raises_and_errors_when_the_table_is_gone(fresh_db):
    from drillbook.drills.data_quality import validate_into

    b = builder()
    validate_into(b, dsn=fresh_db, suite="orders", suites_dir=SHIPPED_SUITES)
    assert [f.code for f in b.findings] == ["DQ_VALIDATION_ERROR"]
    b.checked()  # the restore drill's other rungs ran; an unverifiable suite still makes it ERROR
    assert b.finish().verdict.value == "ERROR"


def test_validate_into_with_a_suite_without_table_is_config_invalid(shop_db, tmp_path):
    import json

    from drillbook.drills.data_quality import validate_into

    data = json.loads((SHIPPED_SUITES / "orders.json").read_text())
    del data["meta"]["drillbook"]
    (tmp_path / "orders.json").write_text(json.dumps(data))
    b = builder()
    validate_into(b, dsn=shop_db, suite="orders", suites_dir=tmp_path)
    assert [f.code for f in b.findings] == ["CONFIG_INVALID"]
