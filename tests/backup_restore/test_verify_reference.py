"""``drillbook reference write``, the committed shop reference, and the sample shop itself."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from tests.backup_restore import test_verify_ladder as base
from tests.backup_restore.test_verify_ladder import INCLUDE, SEED_UNTIL, codes, ladder, sql

# The seeded-shop fixtures live in test_verify_ladder; exposing them here lets pytest find them.
shop_template = base.shop_template
shop_db = base.shop_db


def _write(*argv: str) -> int:
    from drillbook.cli.reference import configure_parser, main

    parser = argparse.ArgumentParser(prog="drillbook reference")
    configure_parser(parser)
    return main(parser.parse_args(list(argv)))


def _without_version(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "server_major_version"}


def test_committed_reference_matches_the_sample_shop(shop_db, tmp_path):
    out = tmp_path / "shop.json"
    assert _write("write", "--dsn", shop_db, "--output", str(out)) == 0
    written = json.loads(out.read_text())
    committed = json.loads((INCLUDE / "references" / "shop.json").read_text())
    assert _without_version(written) == _without_version(committed), (
        "include/references/shop.json is out of date: re-run `drillbook reference write` on a seeded shop"
    )
    # deterministic bytes: writing twice gives the same file (this time through the `drillbook` dispatcher)
    from drillbook.cli import main as drillbook

    again = tmp_path / "again.json"
    assert drillbook(["reference", "write", "--dsn", shop_db, "-o", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_reference_written_then_object_dropped(shop_db, tmp_path, monkeypatch):
    monkeypatch.setenv("DRILLBOOK_REFERENCE_DSN", shop_db)
    assert _write("write", "--output", str(tmp_path / "ref.json")) == 0
    sql(shop_db, "drop function public.order_total_cents(bigint)")
    sql(shop_db, "drop view public.customer_order_totals")
    result = ladder(shop_db, base_dir=tmp_path, reference="ref.json", amcheck=False)
    assert codes(result) == ["STRUCTURE_MISSING", "STRUCTURE_MISSING"]
    assert sorted(f.subject for f in result.findings) == [
        "public.customer_order_totals",
        "public.order_total_cents(p_order_id bigint)",
    ]


def test_reference_cli_errors_without_leaking_the_password(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DRILLBOOK_REFERENCE_DSN", raising=False)
    assert _write("write", "-o", str(tmp_path / "x.json")) == 2
    assert "DRILLBOOK_REFERENCE_DSN" in capsys.readouterr().err
    monkeypatch.setenv(
        "DRILLBOOK_REFERENCE_DSN",
        "host=127.0.0.1 port=1 user=u password=Hunter2secret dbname=d connect_timeout=2",
    )
    assert _write("write", "-o", str(tmp_path / "x.json")) == 2
    captured = capsys.readouterr()
    assert "Hunter2secret" not in captured.err + captured.out
    assert "127.0.0.1:1/d" in captured.err
    assert not (tmp_path / "x.json").exists()


# --- the sample shop ------------------------------------------------------------------------------
def _fingerprint(dsn: str) -> list[tuple]:
    return sql(
        dsn,
        """
        select (select md5(string_agg(o::text, ',' order by id)) from public.orders o),
               (select md5(string_agg(i::text, ',' order by order_id, line_no)) from public.order_items i),
               (select md5(string_agg(c::text, ',' order by id)) from public.customers c)""",
    )


def test_sample_shop_is_deterministic_and_consistent(pg, shop_db):
    from drillbook.sample.shop import seed_shop

    other = pg.create_database("vseed")
    try:
        rows = seed_shop(pg.dsn(other), until=SEED_UNTIL)
        assert _fingerprint(pg.dsn(other)) == _fingerprint(shop_db)
        assert rows["customers"] == 200 and rows["orders"] == 2000 and rows["products"] == 100
        assert rows["total"] == sum(v for k, v in rows.items() if k != "total")
    finally:
        pg.drop_database(other)
    # totals are the sum of their items; the newest order is at `until`; the matview is populated
    assert sql(
        shop_db,
        """select count(*) from public.orders o
                           where o.total_cents <> public.order_total_cents(o.id)""",
    ) == [(0,)]
    assert sql(shop_db, "select max(created_at) from public.orders") == [(SEED_UNTIL,)]
    assert sql(shop_db, "select ispopulated from pg_matviews where matviewname = 'daily_revenue'") == [
        (True,)
    ]
    assert sql(shop_db, "select count(distinct status) from public.orders") == [(5,)]


def test_seed_default_anchor_is_now(pg):
    from drillbook.sample.shop import seed_shop

    name = pg.create_database("vnow")
    try:
        before = datetime.now(UTC).replace(microsecond=0)
        seed_shop(pg.dsn(name), customers=5, orders=10)
        (newest,) = sql(pg.dsn(name), "select max(created_at) from public.orders")[0]
        assert before <= newest <= datetime.now(UTC)
    finally:
        pg.drop_database(name)
