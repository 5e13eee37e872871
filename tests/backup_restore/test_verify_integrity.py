"""Integrity and data-quality rungs: sequences, materialized views, amcheck, GX suites."""

from __future__ import annotations

import uuid

import pytest

from tests.backup_restore import test_verify_ladder as base
from tests.backup_restore.test_verify_ladder import codes, ladder, phase, sql

# The seeded-shop fixtures live in test_verify_ladder; exposing them here lets pytest find them.
shop_template = base.shop_template
shop_db = base.shop_db


# --- sequences ----------------------------------------------------------------------------------
def test_sequence_behind_its_column(shop_db):
    from drillbook.sample.shop import make_sequence_behind

    seq = make_sequence_behind(shop_db)
    result = ladder(shop_db, amcheck=False)
    assert codes(result) == ["SEQUENCE_BEHIND"]
    (f,) = result.findings
    assert f.subject == seq == "public.orders_id_seq"
    assert (
        f.detail["column"] == "public.orders.id"
        and f.detail["column_max"] == 2000
        and f.detail["last_value"] == 1
    )
    assert result.verdict.value == "FAIL"
    assert phase(result, "verify.integrity").status == "failed"


def test_is_called_false_sequence_is_one_step_back(shop_db):
    # setval(s, 2001, false): nextval() returns 2001, max(id) is 2000: healthy.
    sql(shop_db, "select setval('public.orders_id_seq', 2001, false)")
    assert codes(ladder(shop_db, amcheck=False)) == []
    # setval(s, 2000, false): nextval() returns 2000, which exists: behind.
    sql(shop_db, "select setval('public.orders_id_seq', 2000, false)")
    # and an identity column's sequence is checked the same way
    sql(shop_db, "select setval(pg_get_serial_sequence('public.customers', 'id'), 5)")
    result = ladder(shop_db, amcheck=False)
    assert sorted(f.subject for f in result.findings) == ["public.customers_id_seq", "public.orders_id_seq"]
    assert set(codes(result)) == {"SEQUENCE_BEHIND"}


# --- materialized views -------------------------------------------------------------------------
def test_unpopulated_matview(shop_db):
    from drillbook.sample.shop import make_matview_unpopulated

    name = make_matview_unpopulated(shop_db)
    result = ladder(shop_db, amcheck=False)
    assert codes(result) == ["MATVIEW_UNPOPULATED"]
    assert result.findings[0].subject == name == "public.daily_revenue"
    assert phase(result, "verify.integrity").status == "failed"
    assert result.verdict.value == "PASS"  # medium: the data is there, the runbook needs a REFRESH step


# --- amcheck ------------------------------------------------------------------------------------
# The embedded pgserver ships no amcheck. So that INDEX_CORRUPT's red case still runs in CI, these
# tests fall back to the machine's PostgreSQL on 127.0.0.1:5432 (DRILLBOOK_TEST_AMCHECK_DSN
# overrides) when it is reachable as a superuser with amcheck; they skip only when neither has it.
MACHINE_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _has_amcheck(admin_dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(admin_dsn, connect_timeout=3, autocommit=True) as conn:
            row = conn.execute(
                "select (select rolsuper from pg_roles where rolname = current_user),"
                " exists(select 1 from pg_available_extensions where name = 'amcheck')"
            ).fetchone()
            return bool(row and row[0] and row[1])
    except psycopg.Error:
        return False


@pytest.fixture
def amcheck_shop(pg, shop_db):
    """DSN of a seeded shop on a server that has amcheck (the test server, else the machine's)."""
    if _has_amcheck(pg.admin_dsn):
        yield shop_db
        return
    import os

    import psycopg

    from drillbook.resources.pg import with_dbname
    from drillbook.sample.shop import seed_shop

    admin = os.environ.get("DRILLBOOK_TEST_AMCHECK_DSN", MACHINE_PG)
    if not _has_amcheck(admin):
        pytest.skip(
            "no PostgreSQL with amcheck: the embedded pgserver ships none and 127.0.0.1:5432 is not usable"
        )
    name = f"vamcheck_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    try:
        seed_shop(with_dbname(admin, name), until=base.SEED_UNTIL)
        yield with_dbname(admin, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def test_corrupt_index_is_found_by_amcheck(amcheck_shop):
    from drillbook.sample.shop import make_index_corrupt

    index = make_index_corrupt(amcheck_shop)
    result = ladder(amcheck_shop)
    assert codes(result) == ["INDEX_CORRUPT"]
    (f,) = result.findings
    assert f.subject == index and f.detail["sqlstate"] == "XX002"
    assert result.verdict.value == "FAIL"
    facts = result.details["verify"]["integrity"]
    assert facts["indexes_corrupt"] == 1 and facts["indexes_checked"] == facts["indexes"]


def test_healthy_indexes_pass_amcheck(amcheck_shop):
    result = ladder(amcheck_shop)
    assert codes(result) == []
    facts = result.details["verify"]["integrity"]
    assert facts["indexes"] >= 9 and facts["indexes_checked"] == facts["indexes"]


def test_amcheck_unavailable_is_said_and_not_counted(pg, shop_db):
    """A role that may not create extensions: amcheck cannot run; auto says so, true makes it an ERROR."""
    from psycopg.conninfo import make_conninfo

    from drillbook.resources.pg import parse

    role = f"vrole_{uuid.uuid4().hex[:8]}"
    pg.execute("postgres", f"create role {role} login")
    pg.execute("postgres", f"grant pg_read_all_data to {role}")
    try:
        dsn = make_conninfo(shop_db, user=role)
        assert parse(dsn)["user"] == role
        auto = ladder(dsn, amcheck="auto")
        required = ladder(dsn, amcheck=True)
        without = ladder(dsn, amcheck=False)
    finally:
        pg.execute("postgres", f"drop role {role}")
    # auto: amcheck is used where it can run; here it cannot, which is said but not counted.
    facts = auto.details["verify"]["integrity"]
    assert "unavailable" in facts["amcheck"] and facts["indexes_checked"] == 0
    assert "unavailable" in phase(auto, "verify.integrity").detail
    assert codes(auto) == [] and auto.verdict.value == "PASS"  # sequences and matviews ran
    assert auto.measurements.counts["checks_run"] == without.measurements.counts["checks_run"]
    # true: amcheck was demanded and could not run -> a blocking finding, never PASS.
    assert codes(required) == ["AMCHECK_UNAVAILABLE"] and required.verdict.value == "ERROR"
    assert required.measurements.counts["checks_run"] == without.measurements.counts["checks_run"]


# --- data quality (Great Expectations; imports GX once, about 8 s) -----------------------------------
def test_quality_rung_runs_the_catalogue_suites(shop_db):
    """One run of the shipped orders suite: one bad row fails exactly one of its 11 expectations."""
    sql(shop_db, "update public.orders set total_cents = 20000000 where id = 7")
    result = ladder(shop_db, amcheck=False, suites=["orders"])
    assert codes(result) == ["DQ_EXPECTATION_FAILED"], [(f.code, f.message) for f in result.findings]
    assert result.details["verify"]["quality"]["expectations"] == 11
    assert phase(result, "verify.quality").status == "failed"
    assert result.verdict.value == "FAIL"
