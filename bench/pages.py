"""Benchmark the evidence pages on a large ledger: p50/p95 per page against a bare SQL query of the same rows.

Loads ``--rows`` records (default 1,000,000) of ``--drills`` drills (default 100) spread over a
year, generated inside PostgreSQL (``generate_series``; the seal trigger is bypassed as the
superuser, so rows carry their own times; their hashes are unique but are NOT a valid chain:
the pages never walk the chain, and verify has its own benchmark in bench/ledger.py). Then
requests every page through the real FastAPI app (in-process HTTP client, the same code the
api-server mounts; auth is a stand-in dependency) and times, for each page, the bare SQL that
fetches the same rows on the same connection kind. Prints p50/p95 per page, the ratio of
the p50s, and peak memory (ru_maxrss).

    python bench/pages.py [--rows 1000000] [--drills 100] [--repeat 40]   # DRILLBOOK_TEST_PG_DSN or pgserver
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

KINDS = ("backup_restore", "data_quality", "certificates", "alert_path")
CONTROLS = {
    "backup_restore": ["SOC2:A1.2", "ISO27001:A.8.13"],
    "data_quality": ["SOC2:A1.3"],
    "certificates": ["ISO27001:A.5.30"],
    "alert_path": ["DORA:Art.12"],
}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(dsn: str, *, rows: int, drills: int, end: datetime) -> float:
    """Generate the ledger in SQL; return the seconds it took."""
    import psycopg

    from ledger import template_result  # bench/ledger.py: a realistic stored result document

    doc = template_result()
    doc["measurements"].update(
        rto_seconds="__RTO__", rpo_seconds="__RPO__"
    )  # numbers put in by SQL text replace
    t0 = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            """
            INSERT INTO drillbook_evidence (seq, recorded_at, record_type, kind, drill, target, verdict, controls,
                dag_id, run_id, task_id, map_index, try_number, trigger, result, prev_hash, hash)
            SELECT s, %(start)s + (s * %(step)s) * interval '1 second', 'drill', k.kind, 'drill_' || (s %% %(drills)s),
                   'postgresql://db.internal/drill_' || (s %% %(drills)s),
                   CASE WHEN s %% 97 = 0 THEN 'FAIL' WHEN s %% 331 = 0 THEN 'ERROR' ELSE 'PASS' END, k.controls,
                   'dr_' || k.kind || '__drill_' || (s %% %(drills)s), 'scheduled__' || s, 'drill', -1, 1, 'scheduled',
                   replace(replace(%(doc)s, '"__RTO__"', (30 + (s %% 600) / 10.0)::text),
                           '"__RPO__"', (600 + (s %% 3000))::text)::json,
                   encode(sha256(('p' || s)::bytea), 'hex'), encode(sha256(('h' || s)::bytea), 'hex')
            FROM generate_series(1, %(rows)s) AS s,
                 LATERAL (SELECT (ARRAY[%(kinds)s])[(s %% %(drills)s) %% 4 + 1] AS kind) kk,
                 LATERAL (SELECT kk.kind, ARRAY(SELECT jsonb_array_elements_text(%(controls)s::jsonb -> kk.kind))
                          AS controls) k
            """.replace("%(kinds)s", ", ".join(f"'{k}'" for k in KINDS)),
            {
                "start": end - timedelta(days=365),
                "step": 365 * 86400 / rows,
                "drills": drills,
                "rows": rows,
                "doc": json.dumps(doc),
                "controls": json.dumps(CONTROLS),
            },
        )
        conn.execute("VACUUM ANALYZE drillbook_evidence")
    return time.perf_counter() - t0


def catalogue_of(numbers: list[int]):  # type: ignore[no-untyped-def]
    """A catalogue of hourly backup-restore drills ``drill_<n>`` (what Controls and Coverage judge against)."""
    from drillbook.catalogue.models import Catalogue

    return Catalogue.model_validate(
        {
            "defaults": {"timezone": "UTC"},
            "drills": [
                {
                    "name": f"drill_{n}",
                    "kind": "backup_restore",
                    "schedule": "@hourly",
                    "controls": CONTROLS["backup_restore"],
                    "source": {"connection": "drillbook_source"},
                    "backup": {"location": f"backups/drill_{n}", "pattern": "*.dump"},
                    "scratch": {"connection": "drillbook_scratch"},
                    "objectives": {"rto": "15m", "rpo": "26h"},
                }
                for n in numbers
            ],
        }
    )


FIRST: dict[str, float] = {}  # the warm-up request's seconds per page (a cold cache for Controls)


def percentiles(fn: Callable[[], object], repeat: int, label: str = "") -> tuple[float, float]:
    t0 = time.perf_counter()
    fn()  # warm-up
    FIRST[label] = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]


def run(
    admin_dsn: str,
    *,
    rows: int,
    drills: int,
    repeat: int,
    database: str | None = None,
    keep: bool = False,
    migrate: bool = False,
) -> int:
    import psycopg
    from fastapi.testclient import TestClient

    from drillbook.ledger.schema import LATEST_VERSION
    from drillbook.ledger.store import Ledger
    from drillbook.resources.pg import with_dbname
    from drillbook.web import queries
    from drillbook.web.app import create_app

    name = database or f"bench_pages_{uuid.uuid4().hex[:8]}"
    if database is None:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_dbname(admin_dsn, name)
    try:
        if database is None or migrate:
            took_m = time.perf_counter()
            applied = Ledger(dsn).init_schema()
            if database is not None and applied:
                print(f"migrated {name} to schema {applied} in {time.perf_counter() - took_m:.1f} s")
        else:
            with psycopg.connect(dsn) as conn:
                have = conn.execute(
                    "SELECT coalesce(max(version), 0) FROM drillbook_schema_version"
                ).fetchone()
            if have and have[0] != LATEST_VERSION:
                # a kept ledger is shared: migrating it in place would rewrite it under others' benchmarks
                # (and an older drillbook refuses a newer schema). Copy it, then migrate the copy.
                print(
                    f"{name} is at schema {have[0]}, this drillbook at {LATEST_VERSION}: copy it first "
                    f"(CREATE DATABASE mine TEMPLATE {name}) and run with --database mine --migrate"
                )
                return 2
        if database is None:
            end = datetime.now(UTC).replace(microsecond=0)
            took = load(dsn, rows=rows, drills=drills, end=end)
            print(
                f"loaded {rows:,} records of {drills} drills over a year in {took:.1f} s; peak RSS {peak_mb():.0f} MB"
            )
        else:
            with psycopg.connect(dsn) as conn:
                row = conn.execute("SELECT max(recorded_at), count(*) FROM drillbook_evidence").fetchone()
            end, rows = row[0], row[1]
            print(f"reusing {name}: {rows:,} records")
        rss_loaded = peak_mb()
        app = create_app(dsn_provider=lambda: dsn, user_dependency=lambda: "bench")
        client = TestClient(app)
        raw = psycopg.connect(dsn, autocommit=True)
        month = ((end - timedelta(days=31)).date().isoformat(), end.date().isoformat())
        mid = rows // 2
        drill = f"drill_{drills // 2}"

        def sql(text: str, *params: object) -> Callable[[], object]:
            return lambda: raw.execute(text, params).fetchall()

        cols = "seq, recorded_at, record_type, kind, drill, target, verdict, controls, dag_id, run_id"
        day_sql = (
            "SELECT date_trunc('day', recorded_at), avg((result->'measurements'->>'rto_seconds')::float), "
            "avg((result->'measurements'->>'rpo_seconds')::float), count(*) FROM drillbook_evidence "
            "WHERE drill = %s AND kind = %s AND record_type = 'drill' AND recorded_at >= %s "
            "AND recorded_at < %s GROUP BY 1"
        )
        kind = KINDS[(drills // 2) % 4]
        with psycopg.connect(dsn, autocommit=True, row_factory=__import__("psycopg.rows").rows.dict_row) as c:
            q90 = queries.seq_bounds(c, since=end - timedelta(days=31), until=end + timedelta(days=1))
            shown = [
                r[k]["seq"]
                for r in queries.coverage(c, since=end - timedelta(days=31), until=end + timedelta(days=1))
                for k in ("newest", "green")
                if r[k] is not None
            ]
        with psycopg.connect(dsn) as c:
            v6 = c.execute(
                "SELECT 1 FROM pg_attribute WHERE attrelid = 'drillbook_evidence'::regclass AND attname = 'rpo_objective'"
            ).fetchone()
        if v6:  # schema 6: the numbers are columns of the covering index; the bare query reads them
            day_sql = day_sql.replace(
                "(result->'measurements'->>'rto_seconds')::float", "rto_seconds"
            ).replace("(result->'measurements'->>'rpo_seconds')::float", "rpo_seconds")
            q90 = (end - timedelta(days=31), end + timedelta(days=1))
        else:
            day_sql = day_sql.replace("recorded_at >= %s AND recorded_at < %s", "seq >= %s AND seq < %s")
        cases: list[tuple[str, str, Callable[[], object]]] = [
            (
                "history (newest 50)",
                "/history",
                sql(f"SELECT {cols} FROM drillbook_evidence ORDER BY seq DESC LIMIT 51"),
            ),
            (
                "history, control SOC2:A1.2",
                "/history?control=SOC2:A1.2",
                sql(
                    f"SELECT {cols} FROM drillbook_evidence WHERE controls @> ARRAY['SOC2:A1.2'] ORDER BY seq DESC LIMIT 51"
                ),
            ),
            (
                f"history, drill {drill}",
                f"/history?drill={drill}",
                sql(
                    f"SELECT {cols} FROM drillbook_evidence WHERE drill = %s ORDER BY seq DESC LIMIT 51",
                    drill,
                ),
            ),
            (
                "history, verdict ERROR, 1 month",
                f"/history?verdict=ERROR&since={month[0]}&until={month[1]}",
                sql(
                    f"SELECT {cols} FROM drillbook_evidence WHERE verdict = 'ERROR' AND recorded_at >= %s "
                    "ORDER BY seq DESC LIMIT 51",
                    month[0],
                ),
            ),
            (
                "history, page at seq 500k",
                f"/history?before={mid}",
                sql(f"SELECT {cols} FROM drillbook_evidence WHERE seq < %s ORDER BY seq DESC LIMIT 51", mid),
            ),
            ("record", f"/record/{mid}", sql("SELECT * FROM drillbook_evidence WHERE seq = %s", mid)),
            (f"trends, {drill}, 31 days", f"/trends?drill={drill}", sql(day_sql, drill, kind, *q90)),
            (
                "controls (no catalogue), 1 month",
                "/controls",
                sql(
                    "SELECT c, count(*) FROM drillbook_evidence, unnest(controls) c WHERE record_type = 'drill' "
                    "AND recorded_at >= %s GROUP BY c",
                    end - timedelta(days=31),
                ),
            ),
            (
                "coverage (no catalogue), 1 month",
                "/coverage",
                sql(
                    "SELECT seq, recorded_at, verdict, target FROM drillbook_evidence WHERE seq = ANY(%s)",
                    shown,
                ),
            ),
            (
                "ledger status",
                "/ledger",
                sql("SELECT seq, hash FROM drillbook_evidence ORDER BY seq DESC LIMIT 1"),
            ),
        ]
        cat = catalogue_of([i for i in range(drills) if KINDS[i % 4] == "backup_restore"])
        with_cat = TestClient(
            create_app(dsn_provider=lambda: dsn, user_dependency=lambda: "bench", catalogue=lambda: cat)
        )
        n_backup = len(cat.drills)
        month_rows = (
            "SELECT seq, recorded_at, drill, kind, verdict, run_id FROM drillbook_evidence "
            "WHERE record_type = 'drill' AND drill = ANY(%s) AND recorded_at >= %s ORDER BY seq"
        )
        cat_cases: list[tuple[str, str, Callable[[], object]]] = [
            (
                f"controls ({n_backup}-drill catalogue), 1 month",
                "/controls",
                sql(month_rows, [d.name for d in cat.drills], end - timedelta(days=31)),
            ),
            (
                f"coverage ({n_backup}-drill catalogue), 1 month",
                "/coverage",
                sql(
                    "SELECT drill, kind, target, max(recorded_at) FILTER (WHERE verdict = 'PASS') FROM drillbook_evidence "
                    "WHERE record_type = 'drill' AND drill = ANY(%s) AND recorded_at >= %s GROUP BY 1, 2, 3",
                    [d.name for d in cat.drills],
                    end - timedelta(days=31),
                ),
            ),
        ]
        worst = 0.0
        print(f"{'page':38} {'p50 ms':>8} {'p95 ms':>8}   {'bare SQL p50':>12}   ratio")
        for label, path, bare in cases + cat_cases:

            def page(
                path: str = path,
                app_client: TestClient = with_cat if (label, path, bare) in cat_cases else client,
            ) -> None:
                answer = app_client.get(path)
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])

            p50, p95 = percentiles(
                page, repeat, label
            )  # the catalogue pages too: since schema 6 they take ms, not s
            b50, _b95 = percentiles(bare, repeat)
            worst = max(worst, p95)
            flag = "" if p95 < 0.150 else "   OVER 150 ms"
            print(
                f"{label:38} {p50 * 1000:8.1f} {p95 * 1000:8.1f}   {b50 * 1000:9.1f} ms   ratio {p50 / b50:6.1f}x{flag}"
            )
        for label, _path, _bare in cat_cases:  # Controls fills its finished-days cache on the first request
            print(f"first request (untimed warm-up) of {label}: {FIRST[label] * 1000:.1f} ms")
        print(
            f"worst p95 {worst * 1000:.1f} ms (target 150 ms); load average {__import__('os').getloadavg()[0]:.1f}"
            f" on {__import__('os').cpu_count()} CPUs"
        )
        print(f"peak RSS: {rss_loaded:.0f} MB after load, {peak_mb():.0f} MB after the pages")
        raw.close()
        app.state.pool.close()
    finally:
        if keep or database:
            print(f"kept the benchmark ledger: --database {name}")
        else:
            with psycopg.connect(admin_dsn, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--drills", type=int, default=100)
    parser.add_argument(
        "--repeat", type=int, default=40, help="timed requests per page (p95 needs about 20+)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the generated database (needs DRILLBOOK_TEST_PG_DSN)"
    )
    parser.add_argument(
        "--database", default=None, help="time a database kept by --keep instead of generating one"
    )
    parser.add_argument(
        "--migrate",
        action="store_true",
        help="with --database: apply newer ledger migrations to it first (on a copy: others may read it)",
    )
    args = parser.parse_args()
    from ledger import server

    with server() as dsn:
        return run(
            dsn,
            rows=args.rows,
            drills=args.drills,
            repeat=args.repeat,
            database=args.database,
            keep=args.keep,
            migrate=args.migrate,
        )


if __name__ == "__main__":
    raise SystemExit(main())
