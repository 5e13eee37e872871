"""The verify ladder on real databases: structure, volume and semantics rungs turned red, and a healthy shop green.

Each test gets its own copy of a seeded shop (``CREATE DATABASE ... TEMPLATE``),
breaks it the way a bad restore would, and asserts the exact finding codes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from drillbook.drills.backup_restore.catalogue import VerifySpec
from drillbook.drills.backup_restore.verify import run_ladder
from drillbook.drills.base import ResultBuilder
from drillbook.errors import DrillAborted
from drillbook.result import DrillResult

REPO = Path(__file__).resolve().parents[2]
INCLUDE = REPO / "include"
SEED_UNTIL = datetime(2026, 1, 1, tzinfo=UTC)
HEALTHY_CHECKS = [
    {
        "name": "every order has a customer",
        "sql": "select count(*) from public.orders o left join public.customers c on c.id = o.customer_id where c.id is null",
        "expect": "== 0",
    },
    {"name": "revenue is positive", "sql": "select sum(total_cents) from public.orders", "expect": "> 0"},
]
RUNGS = [
    "verify.structure",
    "verify.server",
    "verify.volume",
    "verify.semantics",
    "verify.integrity",
    "verify.quality",
]


# --- fixtures and helpers (imported by the other test_verify_* modules) -------------------------
@pytest.fixture(scope="session")
def shop_template(pg) -> str:
    """A seeded shop database used only as a template; tests get copies of it."""
    from drillbook.sample.shop import seed_shop

    name = pg.create_database("vtpl")
    seed_shop(pg.dsn(name), until=SEED_UNTIL)
    yield name
    pg.drop_database(name)


@pytest.fixture
def shop_db(pg, shop_template) -> str:
    """DSN of a fresh copy of the seeded shop."""
    name = f"vshop_{uuid.uuid4().hex[:10]}"
    pg.execute("postgres", f'create database "{name}" template "{shop_template}"')
    yield pg.dsn(name)
    pg.drop_database(name)


def sql(dsn: str, statement: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def ladder(
    dsn: str,
    *,
    previous: dict[str, Any] | None = None,
    base_dir: Path = INCLUDE,
    timeouts: Any = None,
    **verify: Any,
) -> DrillResult:
    """Run the whole ladder on ``dsn`` and return the finished result (``timeouts``: a DrillTimeouts)."""
    builder = ResultBuilder(kind="backup_restore", drill="verify_test", target="scratch")
    run_ladder(
        builder,
        scratch_dsn=dsn,
        verify=VerifySpec.model_validate(verify),
        base_dir=base_dir,
        previous=previous,
        timeouts=timeouts,
    )
    return builder.finish()


def codes(result: DrillResult) -> list[str]:
    return [f.code for f in result.findings]


def serious(result: DrillResult) -> list[str]:
    return [f.code for f in result.findings if f.severity.at_least("medium")]


def phase(result: DrillResult, name: str):
    return next(p for p in result.phases if p.name == name)


def healthy_verify() -> dict[str, Any]:
    return {
        "reference": "references/shop.json",
        "min_rows": {"public.customers": 100, "public.orders": 1000},
        "drift_tolerance": 0.1,
        "checks": HEALTHY_CHECKS,
    }


# --- healthy ------------------------------------------------------------------------------------
def test_healthy_shop_passes_every_rung(shop_db):
    first = ladder(shop_db, **healthy_verify())
    assert serious(first) == [], [(f.code, f.message) for f in first.findings]
    assert first.verdict.value == "PASS"
    assert [p.name for p in first.phases] == RUNGS
    statuses = {p.name: p.status for p in first.phases}
    assert statuses == {
        "verify.structure": "ok",
        "verify.server": "ok",
        "verify.volume": "ok",
        "verify.semantics": "ok",
        "verify.integrity": "ok",
        "verify.quality": "not configured",
    }
    rows = first.details["verify"]["volume"]["rows"]
    assert rows == {
        "public.customers": 200,
        "public.order_items": rows["public.order_items"],
        "public.orders": 2000,
        "public.products": 100,
    }
    assert first.measurements.counts["rows_restored"] == sum(rows.values())
    assert first.details["verify"]["structure"]["missing"] == 0

    # The next run compares against this one (the last PASS) and stays green.
    second = ladder(shop_db, previous=first.to_json_dict(), **healthy_verify())
    assert serious(second) == [] and second.verdict.value == "PASS"
    assert second.details["verify"]["volume"]["compared_with_previous"] is True
    assert codes(second) == codes(first)  # amcheck installed by run 1 is not "unexpected structure"


def test_nothing_configured_still_checks_emptiness(shop_db):
    result = ladder(shop_db, amcheck=False)
    assert result.verdict.value == "PASS"
    statuses = {p.name: p.status for p in result.phases}
    assert statuses["verify.volume"] == "not configured"
    assert statuses["verify.semantics"] == "not configured"
    assert statuses["verify.quality"] == "not configured"
    assert result.details["verify"]["structure"]["reference"] is None


# --- structure ----------------------------------------------------------------------------------
def test_missing_table_is_reported_once(shop_db):
    sql(shop_db, "drop table public.order_items")
    result = ladder(shop_db, reference="references/shop.json")
    assert codes(result) == ["STRUCTURE_MISSING"]
    (f,) = result.findings
    assert f.subject == "public.order_items" and "not restored" in f.message
    assert result.verdict.value == "FAIL"
    assert phase(result, "verify.structure").status == "failed"


def test_changed_column_and_dropped_index_are_missing(shop_db):
    sql(shop_db, "drop index public.orders_created_at_idx")
    sql(shop_db, "alter table public.customers alter column country type text")
    result = ladder(shop_db, reference="references/shop.json")
    assert codes(result) == ["STRUCTURE_MISSING", "STRUCTURE_MISSING"]
    by_subject = {f.subject: f for f in result.findings}  # each object is its own finding, named
    assert (
        "expected 'character(2) not null', restored 'text not null'"
        in by_subject["public.customers.country"].message
    )
    assert (
        "index public.orders_created_at_idx is in the reference but was not restored"
        in by_subject["public.orders_created_at_idx"].message
    )


def test_unexpected_table_is_low(shop_db):
    sql(shop_db, "create table public.audit_log (id int primary key, note text)")
    result = ladder(shop_db, reference="references/shop.json")
    assert codes(result) == ["STRUCTURE_UNEXPECTED"]
    assert result.findings[0].subject == "public.audit_log"
    assert result.findings[0].severity.value == "low"
    assert result.verdict.value == "PASS"


def test_empty_restore(pg, fresh_db):
    result = ladder(fresh_db)
    assert codes(result) == ["EMPTY_RESTORE"]
    assert result.verdict.value == "FAIL"
    with_reference = ladder(fresh_db, reference="references/shop.json")
    assert codes(with_reference)[0] == "EMPTY_RESTORE"
    assert set(codes(with_reference)) == {"EMPTY_RESTORE", "STRUCTURE_MISSING"}


def test_unreadable_reference_is_an_error_not_a_pass(shop_db, tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    result = ladder(shop_db, base_dir=tmp_path, reference="broken.json")
    assert codes(result) == ["CONFIG_INVALID"]
    assert result.verdict.value == "ERROR"
    missing = ladder(shop_db, base_dir=tmp_path, reference="absent.json")
    assert codes(missing) == ["CONFIG_INVALID"] and "drillbook reference write" in missing.findings[0].message


# --- volume -------------------------------------------------------------------------------------
def test_below_minimum_and_table_missing(shop_db):
    sql(shop_db, "delete from public.orders where id > 500")  # items go too (on delete cascade)
    result = ladder(shop_db, min_rows={"public.orders": 1000, "customers": 100, "public.refunds": 1})
    assert sorted(codes(result)) == ["VOLUME_BELOW_MINIMUM", "VOLUME_TABLE_MISSING"]
    below = next(f for f in result.findings if f.code == "VOLUME_BELOW_MINIMUM")
    assert (
        below.subject == "public.orders" and below.detail["rows"] == 500 and below.detail["minimum"] == 1000
    )
    assert next(f for f in result.findings if f.code == "VOLUME_TABLE_MISSING").subject == "public.refunds"
    assert result.verdict.value == "FAIL"


def _previous(rows: dict[str, int]) -> dict[str, Any]:
    return {
        "verdict": "PASS",
        "started_at": "2026-01-01T03:30:00+00:00",
        "details": {"verify": {"volume": {"rows": rows}}},
    }


def test_drift_against_the_last_pass(shop_db):
    sql(shop_db, "delete from public.orders where id > 1700")  # 2000 -> 1700: 15% shrink
    result = ladder(shop_db, previous=_previous({"public.orders": 2000, "public.customers": 150}))
    assert codes(result) == ["VOLUME_DRIFT"]  # customers grew 150 -> 200: never a finding
    (f,) = result.findings
    assert f.subject == "public.orders" and f.detail["previous_rows"] == 2000 and f.detail["rows"] == 1700
    assert "2026-01-01" in f.message

    within = ladder(shop_db, previous=_previous({"public.orders": 1800}), drift_tolerance=0.1)  # 5.6% shrink
    assert codes(within) == [] and within.verdict.value == "PASS"


def test_table_gone_since_the_last_pass_is_drift(shop_db):
    result = ladder(
        shop_db, previous=_previous({"public.orders": 2000, "public.refunds": 40, "public.empty": 0})
    )
    assert codes(result) == ["VOLUME_DRIFT"]
    assert result.findings[0].subject == "public.refunds" and result.findings[0].detail["absent"] is True


# --- semantics ----------------------------------------------------------------------------------
def test_failing_check_names_the_value_found(shop_db):
    sql(shop_db, "alter table public.orders drop constraint orders_customer_id_fkey")
    sql(shop_db, "update public.orders set customer_id = 999999 where id <= 3")
    result = ladder(shop_db, checks=HEALTHY_CHECKS)
    assert codes(result) == ["SEMANTICS_FAILED"]
    (f,) = result.findings
    assert f.subject == "every order has a customer"
    assert "expected '== 0' but found 3" in f.message and f.detail["value"] == "3"
    assert result.details["verify"]["semantics"]["checks"][1]["holds"] is True


def test_check_whose_sql_fails_or_writes_does_not_hold(shop_db):
    """A missing table did not hold (SEMANTICS_FAILED); a check that may not run is SEMANTICS_ERROR."""
    checks = [
        {"name": "typo", "sql": "select count(*) from public.ordrs", "expect": "> 0"},
        {"name": "writes", "sql": "delete from public.order_items returning 1", "expect": "== 1"},
        {"name": "no rows", "sql": "select 1 where false", "expect": "== 1"},
    ]
    result = ladder(shop_db, checks=checks)
    assert codes(result) == ["SEMANTICS_FAILED", "SEMANTICS_ERROR", "SEMANTICS_FAILED"]
    assert result.verdict.value == "ERROR"
    by_name = {f.subject: f for f in result.findings}
    assert "does not exist" in by_name["typo"].message
    assert "read-only transaction" in by_name["writes"].message
    assert "found NULL" in by_name["no rows"].message
    assert sql(shop_db, "select count(*) > 0 from public.order_items") == [(True,)]  # nothing was written
    assert result.measurements.counts["checks_run"] >= 2


# --- connection ---------------------------------------------------------------------------------
def test_unreachable_scratch_is_an_error(pg):
    from drillbook.resources.pg import with_dbname

    builder = ResultBuilder(kind="backup_restore", drill="verify_test", target="scratch")
    dsn = with_dbname("host=127.0.0.1 port=1 user=nobody connect_timeout=2", "nowhere")
    with pytest.raises(DrillAborted):
        run_ladder(builder, scratch_dsn=dsn, verify=VerifySpec(), base_dir=INCLUDE, previous=None)
    result = builder.finish()
    assert codes(result) == ["SCRATCH_UNREACHABLE"] and result.verdict.value == "ERROR"


# --- after a real dump and restore --------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["custom", "plain"])
def test_real_restore_matches_the_reference(pg, shop_db, tmp_path, fmt):
    """No false alarm on a real round trip: pg_dump, then pg_restore or psql into an empty database."""
    import subprocess

    from drillbook.resources.pg import tool_env

    dump = tmp_path / ("shop.dump" if fmt == "custom" else "shop.sql")
    subprocess.run(
        [f"{pg.bin_dir}/pg_dump", "-Fc" if fmt == "custom" else "-Fp", "-f", str(dump)],
        env=tool_env(shop_db),
        check=True,
        capture_output=True,
        timeout=120,
    )
    target = pg.create_database("vrest")
    try:
        dsn = pg.dsn(target)
        if fmt == "custom":
            argv = [f"{pg.bin_dir}/pg_restore", "--exit-on-error", "-d", target, str(dump)]
        else:
            argv = [f"{pg.bin_dir}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target, "-f", str(dump)]
        subprocess.run(argv, env=tool_env(dsn), check=True, capture_output=True, timeout=120)
        previous = ladder(shop_db, **healthy_verify()).to_json_dict()
        result = ladder(dsn, previous=previous, **healthy_verify())
    finally:
        pg.drop_database(target)
    assert codes(result) == [], [(f.code, f.message) for f in result.findings]
    assert result.verdict.value == "PASS"
    assert result.details["verify"]["volume"]["rows"] == previous["details"]["verify"]["volume"]["rows"]


def test_drift_against_the_last_pass_in_the_ledger(shop_db, ledger_dsn):
    """The rows a PASS records survive the ledger's JSON round trip and drive the next run's drift check."""
    from drillbook.ledger.store import Ledger
    from drillbook.run.context import RunContext

    ledger = Ledger(ledger_dsn)
    good = ladder(shop_db, **healthy_verify())
    assert good.verdict.value == "PASS"
    ledger.record(good, RunContext.for_cli(kind="backup_restore", drill="verify_test"))

    sql(shop_db, "delete from public.order_items where order_id > 1000")  # about half the items
    record = ledger.last_pass(kind="backup_restore", drill="verify_test")
    assert record is not None
    result = ladder(shop_db, previous=record.result, **healthy_verify())
    assert codes(result) == ["VOLUME_DRIFT"]
    assert result.findings[0].subject == "public.order_items"


def test_many_missing_objects_are_capped_with_a_summary(shop_db, tmp_path):
    from drillbook.drills.backup_restore.verify.structure import MAX_FINDINGS_PER_CODE

    n = MAX_FINDINGS_PER_CODE + 5
    sql(
        shop_db,
        f"do $$ begin for i in 1..{n} loop execute format('create table public.extra_%s (id int)', i); "
        "end loop; end $$",
    )
    from drillbook.cli import main as drillbook

    assert drillbook(["reference", "write", "--dsn", shop_db, "-o", str(tmp_path / "ref.json")]) == 0
    sql(
        shop_db,
        f"do $$ begin for i in 1..{n} loop execute format('drop table public.extra_%s', i); end loop; end $$",
    )
    result = ladder(shop_db, base_dir=tmp_path, reference="ref.json", amcheck=False)
    assert codes(result) == ["STRUCTURE_MISSING"] * (MAX_FINDINGS_PER_CODE + 1)
    assert result.findings[-1].detail["count"] == 5
    assert result.details["verify"]["structure"]["missing"] == n
    # every object is still named: in a finding, in the summary's message, and in the details
    import re

    named = set(re.findall(r"table public\.extra_(\d+)\b", " ".join(f.message for f in result.findings)))
    assert named == {str(i) for i in range(1, n + 1)}
    assert len(result.details["verify"]["structure"]["missing_objects"]) == n


def test_partitions_quoted_names_and_other_schemas(shop_db):
    """Identifiers are quoted (mixed case, spaces); partitions are not counted twice in the total."""
    sql(shop_db, 'create schema "Sales"')
    sql(shop_db, 'create table "Sales"."Order Lines" (id bigserial primary key, n int)')
    sql(shop_db, 'insert into "Sales"."Order Lines" (n) select g from generate_series(1, 30) g')
    sql(shop_db, "create table public.events (id int, at date not null) partition by range (at)")
    sql(
        shop_db,
        "create table public.events_2025 partition of public.events for values from ('2025-01-01') to ('2026-01-01')",
    )
    sql(
        shop_db,
        "create table public.events_2026 partition of public.events for values from ('2026-01-01') to ('2027-01-01')",
    )
    sql(shop_db, "insert into public.events select g, date '2025-12-27' + g from generate_series(1, 10) g")
    base_total = 200 + 100 + 2000
    result = ladder(shop_db, min_rows={"Sales.Order Lines": 30})
    rows = result.details["verify"]["volume"]["rows"]
    assert rows["Sales.Order Lines"] == 30
    assert rows["public.events"] == 10 and rows["public.events_2025"] == 4 and rows["public.events_2026"] == 6
    assert result.measurements.counts["rows_restored"] == base_total + rows["public.order_items"] + 30 + 10
    assert codes(result) == []

    sql(shop_db, """select setval('"Sales"."Order Lines_id_seq"', 3)""")
    behind = ladder(shop_db, amcheck=False)
    assert codes(behind) == ["SEQUENCE_BEHIND"] and behind.findings[0].subject == "Sales.Order Lines_id_seq"
