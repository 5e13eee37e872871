"""Benchmark the statement filter in front of psql: a plain dump restored through it vs a bare psql -f.

Seeds the sample shop, dumps it as plain SQL once, then alternates, in one
process, ``psql -f dump.sql`` (baseline) with drillbook's restore
(``run_restore``: the dump read by a feeder thread, judged statement by
statement and line by line, into ``psql -f -``), each into a fresh database;
also times the pre-scan (the whole dump read once through the filter without
psql). Prints medians, the ratio and peak memory (ru_maxrss).

    python bench/dump_filter.py [--orders 700000] [--rounds 3]   # DRILLBOOK_TEST_PG_DSN or an embedded pgserver
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=700_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from drillbook.drills.backup_restore import restore, tools
    from drillbook.drills.backup_restore.prescan import scan_plain
    from drillbook.resources import pg
    from drillbook.sample.shop import seed_shop

    tmp = Path(tempfile.mkdtemp(prefix="drillbook-bench-filter-"))
    server = None
    dsn = os.environ.get("DRILLBOOK_TEST_PG_DSN")
    if not dsn:
        import pgserver

        server = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
        dsn = server.get_uri("postgres")
    try:
        with pg.connect(dsn, autocommit=True) as conn:
            src = f"bench_src_{uuid.uuid4().hex[:8]}"
            conn.execute(f"CREATE DATABASE {src}")
        seed_shop(pg.with_dbname(dsn, src), customers=max(100, args.orders // 7), orders=args.orders)
        psql, _ = tools.choose("psql", min_major=None)
        pg_dump, _ = tools.choose("pg_dump", min_major=None)
        assert psql and pg_dump
        dump = tmp / "shop.sql"
        subprocess.run(
            [pg_dump.path, "-Fp", "-f", str(dump)],
            env=pg.tool_env(pg.with_dbname(dsn, src)),
            check=True,
            timeout=3600,
        )
        size = dump.stat().st_size
        bare, filtered, scans = [], [], []
        for _ in range(args.rounds):
            for label in ("bare", "filtered"):
                db = f"bench_dst_{uuid.uuid4().hex[:8]}"
                with pg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE {db} TEMPLATE template0")
                target = pg.with_dbname(dsn, db)
                t = time.perf_counter()
                if label == "bare":
                    subprocess.run(
                        [psql.path, "--no-psqlrc", "-q", "-v", "ON_ERROR_STOP=0", "-f", str(dump)],
                        env=pg.tool_env(target),
                        check=True,
                        timeout=3600,
                        stdout=subprocess.DEVNULL,
                    )
                    bare.append(time.perf_counter() - t)
                else:
                    outcome = restore.run_restore(
                        fmt="plain",
                        tool=psql,
                        path=dump,
                        scratch_db_dsn=target,
                        jobs=1,
                        no_owner=False,
                        timeout=3600,
                    )
                    assert outcome.refusal is None and outcome.exit_code == 0, outcome.classifier.tail
                    filtered.append(time.perf_counter() - t)
                with pg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE {db} WITH (FORCE)")
            t = time.perf_counter()
            scan = scan_plain(dump, gz=False, target="shared")
            scans.append(time.perf_counter() - t)
            assert not scan.refusals
        b, f, s = statistics.median(bare), statistics.median(filtered), statistics.median(scans)
        print(f"plain dump {size / 1e6:.1f} MB, {args.orders} orders, {args.rounds} round(s)")
        print(f"bare psql -f         median {b:.2f} s")
        print(f"filtered feed        median {f:.2f} s   ratio {f / b:.2f}x")
        print(f"pre-scan (no psql)   median {s:.2f} s   {size / 1e6 / s:.0f} MB/s")
        print(f"pre-scan + feed      ratio {(f + s) / b:.2f}x")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
