"""Benchmark: a GX suite of 9 expectations on a 5-million-row table vs hand-written SQL computing the same facts.

Principle 4 (measured, not claimed): both are timed in the same run against the
same warm server; the ratio GX / SQL is printed (target <= 2x), with the peak
RSS of this process, which must not grow with the table (validation is pushed
down into PostgreSQL; no rows are loaded into pandas).

    .venv/bin/python bench/data_quality.py [--rows 5000000] [--repeat 3] [--dsn ADMIN_DSN]

Without --dsn (or $DRILLBOOK_BENCH_DSN) an embedded pgserver (PostgreSQL 16) is started.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

STATUSES = ["new", "paid", "shipped", "cancelled", "refunded"]
SUITE = {
    "name": "bench_orders",
    "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1000}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}},
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "total_cents", "min_value": 0, "max_value": 1000000},
        },
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "status", "value_set": STATUSES}},
        {
            "type": "expect_column_values_to_match_regex",
            "kwargs": {"column": "currency", "regex": "^[A-Z]{3}$"},
        },
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "created_at"}},
        {
            "type": "expect_column_values_to_match_regex",
            "kwargs": {"column": "email", "regex": "^[^@ ]+@[^@ ]+$"},
        },
        {
            "type": "expect_column_max_to_be_between",
            "kwargs": {"column": "total_cents", "max_value": 1000000},
        },
    ],
    "meta": {"drillbook": {"table": "public.orders"}},
}

SEED = """
create table public.orders (id bigint, customer_id bigint, status text, total_cents bigint, currency char(3),
                            email text, created_at timestamptz not null);
insert into public.orders
select g, 1 + g % 100003, (array['new','paid','shipped','cancelled','refunded'])[1 + g % 5], (g * 37) % 100000,
       (array['EUR','USD','GBP'])[1 + g % 3], 'customer' || g || '@example.com',
       timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'
from generate_series(1, {rows}) g;
analyze public.orders;
"""

# The same facts, written by hand: one aggregate scan plus the duplicate count.
HAND_SQL = [
    """select count(*),
              count(*) filter (where customer_id is null),
              count(*) filter (where total_cents < 0 or total_cents > 1000000),
              count(*) filter (where status not in ('new','paid','shipped','cancelled','refunded')),
              count(*) filter (where currency !~ '^[A-Z]{3}$'),
              count(*) filter (where created_at is null),
              count(*) filter (where email !~ '^[^@ ]+@[^@ ]+$'),
              max(total_cents)
       from public.orders""",
    "select coalesce(sum(n), 0) from (select count(*) as n from public.orders group by id having count(*) > 1) d",
]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def admin_dsn(args: argparse.Namespace) -> tuple[str, object | None, Path | None]:
    dsn = args.dsn or os.environ.get("DRILLBOOK_BENCH_DSN")
    if dsn:
        return dsn, None, None
    import pgserver

    data = Path(tempfile.mkdtemp(prefix="drillbook-bench-pg-"))
    server = pgserver.get_server(data, cleanup_mode="stop")
    return server.get_uri("postgres"), server, data


def hand_written(dsn: str) -> tuple[float, list[tuple]]:
    import psycopg

    start = time.perf_counter()
    rows = []
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for sql in HAND_SQL:
            cur.execute(sql)
            rows.append(cur.fetchone())
    return time.perf_counter() - start, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="toy-size run that only proves the benchmark still works (no target check)",
    )
    parser.add_argument(
        "--dsn", default=None, help="superuser DSN of a server to create the bench database on"
    )
    args = parser.parse_args()

    import psycopg

    from drillbook.drills.data_quality import run_data_quality
    from drillbook.resources.pg import with_dbname

    admin, server, data_dir = admin_dsn(args)
    dbname = f"dq_bench_{uuid.uuid4().hex[:8]}"
    suites = Path(tempfile.mkdtemp(prefix="drillbook-bench-suites-"))
    (suites / "bench_orders.json").write_text(json.dumps(SUITE))
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'create database "{dbname}"')
        dsn = with_dbname(admin, dbname)
        t = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SEED.format(rows=int(args.rows)))
        print(f"seeded {args.rows:,} rows in {time.perf_counter() - t:.1f}s")

        rss_before_gx = peak_rss_mb()
        t = time.perf_counter()
        warm = run_data_quality(
            drill_name="bench", dsn=dsn, suite="bench_orders", suites_dir=suites
        )  # GX import + warm cache
        print(
            f"first run (GX import, cold caches): {time.perf_counter() - t:.2f}s, verdict {warm.verdict.value}"
        )
        assert warm.verdict.value == "PASS", warm.findings
        rss_after_import = peak_rss_mb()
        hand_written(dsn)  # warm the same pages for the baseline

        gx_times, sql_times = [], []
        for _ in range(args.repeat):  # interleaved, so drift in the server's state hits both alike
            t = time.perf_counter()
            result = run_data_quality(drill_name="bench", dsn=dsn, suite="bench_orders", suites_dir=suites)
            gx_times.append(time.perf_counter() - t)
            assert result.verdict.value == "PASS" and result.measurements.counts["checks_run"] == len(
                SUITE["expectations"]
            )
            seconds, facts = hand_written(dsn)
            sql_times.append(seconds)
        gx, sql = statistics.median(gx_times), statistics.median(sql_times)
        print(
            f"facts (hand-written): rows={facts[0][0]:,} nulls={facts[0][1]} out_of_range={facts[0][2]} "
            f"not_in_set={facts[0][3]} regex_miss={facts[0][4]}/{facts[0][6]} max={facts[0][7]} duplicates={facts[1][0]}"
        )
        print(
            f"GX drill (9 expectations, pushdown): median {gx:.2f}s  runs {[round(x, 2) for x in gx_times]}"
        )
        print(
            f"hand-written SQL (same facts):      median {sql:.2f}s  runs {[round(x, 2) for x in sql_times]}"
        )
        print(f"ratio GX / SQL: {gx / sql:.2f}x (target <= 2.0x)")
        print(
            f"peak RSS: {peak_rss_mb():.0f} MB (before GX {rss_before_gx:.0f} MB, after the first run "
            f"{rss_after_import:.0f} MB: the table never enters this process)"
        )
        return 0 if args.smoke or gx / sql <= 2.0 else 1
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{dbname}" with (force)')
        shutil.rmtree(suites, ignore_errors=True)
        if server is not None:
            server.cleanup()  # type: ignore[attr-defined]
            shutil.rmtree(str(data_dir), ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
