"""Benchmark: the whole backup-restore drill vs a bare ``pg_restore`` of the same dump.

Builds a shop of >= 2 million rows (set-based SQL), dumps it once (``pg_dump
-Fc`` + a .sha256 sidecar), then in one process alternates a bare ``pg_restore
-j N`` into an empty database with the whole drill (scratch, locate, fetch +
sha256, inspect, restore -j N, the full verify ladder with a structure
reference, minimum rows, SQL checks, amcheck, RPO probe, and the ledger
record). Prints each timing, the ratio drill/bare (target <= 1.3) and the peak
RSS of this process and of its children (pg_restore).

    .venv/bin/python bench/backup_restore.py [--orders 700000] [--rounds 2] [--dsn DSN]

Without --dsn (or $DRILLBOOK_BENCH_PG_DSN) an embedded PostgreSQL (pgserver) is started.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))


def _server(dsn: str | None):  # type: ignore[no-untyped-def]
    if dsn:
        return dsn, None
    import pgserver

    data = Path(tempfile.mkdtemp(prefix="drillbook-bench-pg-"))
    server = pgserver.get_server(data, cleanup_mode="stop")
    return server.get_uri("postgres"), (server, data)


def _exec(dsn: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("DRILLBOOK_BENCH_PG_DSN"))
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=700_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="toy-size run that only proves the benchmark still works (no size or target checks)",
    )
    args = parser.parse_args(argv)

    from drillbook.drills.backup_restore import tools
    from drillbook.drills.backup_restore.catalogue import BackupRestoreDrill
    from drillbook.drills.backup_restore.drill import run_backup_restore
    from drillbook.drills.backup_restore.fetch import sha256_file
    from drillbook.drills.backup_restore.scratch import ScratchGuard
    from drillbook.drills.backup_restore.verify.structure import write_reference
    from drillbook.ledger.store import Ledger
    from drillbook.resources.pg import connect, tool_env, with_dbname
    from drillbook.run.context import RunContext
    from drillbook.sample.shop import seed_shop

    admin, owned = _server(args.dsn)
    tag = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="drillbook-bench-"))
    source_db, ledger_db = f"bench_shop_{tag}", f"bench_ledger_{tag}"
    made = [source_db, ledger_db]
    try:
        _exec(admin, f"create database {source_db}")
        _exec(admin, f"create database {ledger_db}")
        source = with_dbname(admin, source_db)
        t = time.monotonic()
        rows = seed_shop(source, customers=args.customers, orders=args.orders)
        print(f"seeded {rows['total']:,} rows ({rows}) in {time.monotonic() - t:.1f}s")
        if not args.smoke and rows["total"] < 2_000_000:
            print("the benchmark needs at least 2 million rows (use --smoke for a toy-size run)")
            return 2

        with connect(source) as conn:
            major = int(conn.info.server_version) // 10000
        pg_dump, _ = tools.choose("pg_dump", min_major=major)
        pg_restore, _ = tools.choose("pg_restore", min_major=pg_dump.major if pg_dump else major)
        assert pg_dump and pg_restore, "no pg_dump/pg_restore for this server"
        backups = work / "backups"
        backups.mkdir()
        dump = backups / "shop-bench.dump"
        t = time.monotonic()
        subprocess.run([pg_dump.path, "-Fc", "-f", str(dump)], env=tool_env(source), check=True)
        digest, size = sha256_file(dump)
        Path(str(dump) + ".sha256").write_text(f"{digest}  {dump.name}\n")
        print(f"pg_dump {pg_dump.version}: {size / 1e6:.1f} MB in {time.monotonic() - t:.1f}s")

        reference = work / "shop.reference.json"
        with connect(source, autocommit=True) as conn:
            write_reference(conn, reference)
        Ledger(with_dbname(admin, ledger_db)).init_schema()
        drill = BackupRestoreDrill.model_validate(
            {
                "name": "bench_shop",
                "kind": "backup_restore",
                "schedule": "@daily",
                "controls": ["SOC2:A1.2"],
                "backup": {"location": str(backups), "pattern": "shop-*.dump"},
                "scratch": {"connection": "bench_scratch"},
                "objectives": {"rto": "1h", "rpo": "26h"},
                "restore": {"jobs": args.jobs},
                "verify": {
                    "reference": str(reference),
                    "min_rows": {"public.customers": args.customers, "public.orders": args.orders},
                    "rpo_probe": "select max(created_at) from public.orders",
                    "checks": [
                        {
                            "name": "every order has a customer",
                            "expect": "== 0",
                            "sql": "select count(*) from public.orders o left join public.customers c on c.id = o.customer_id where c.id is null",
                        },
                        {
                            "name": "revenue is positive",
                            "sql": "select sum(total_cents) from public.orders",
                            "expect": "> 0",
                        },
                    ],
                    "amcheck": "auto",  # checked where the server has amcheck (PG15 here), noted where not (pgserver)
                },
            }
        )

        bare_times: list[float] = []
        drill_times: list[float] = []
        teardown_times: list[float] = []
        guard = ScratchGuard(scratch_dsn=admin)

        def bare_round(round_no: int) -> None:
            target = f"bench_bare_{tag}_{round_no}"
            _exec(
                admin, f"create database {target} template template0"
            )  # untimed, like the drill's setup task
            made.append(target)
            t = time.monotonic()
            subprocess.run(
                [pg_restore.path, "--no-password", "-d", target, "-j", str(args.jobs), str(dump)],
                env=tool_env(with_dbname(admin, target)),
                check=True,
            )
            bare_times.append(time.monotonic() - t)
            _exec(admin, f"drop database {target} with (force)")  # untimed, like the drill's teardown task
            made.remove(target)

        def drill_round(round_no: int) -> bool:
            # As in the DAG: the setup task creates the scratch database and the teardown task
            # drops it; the timed part is the work task (scratch check .. measure) plus the record.
            scratch_db = guard.create(drill=drill.name, run_id=f"bench_{tag}_{round_no}", hold=False)
            t = time.monotonic()
            ledger = Ledger(with_dbname(admin, ledger_db))
            result = run_backup_restore(
                drill=drill,
                scratch_dsn=admin,
                work_dir=work / "w",
                ledger=ledger,
                scratch_db=scratch_db,
                run_id=f"bench_{tag}_{round_no}",
            )
            ctx = RunContext(
                dag_id="dr_backup_restore__bench_shop", run_id=f"bench_{tag}_{round_no}", task_id="record"
            )
            ledger.record(result, ctx)
            ledger.close()
            drill_times.append(time.monotonic() - t)
            t = time.monotonic()
            guard.drop(scratch_db)
            teardown_times.append(time.monotonic() - t)
            phases = ", ".join(f"{p.name} {p.seconds:.2f}s" for p in result.phases)
            rto = result.measurements.rto_seconds
            print(
                f"round {round_no}: drill {drill_times[-1]:.2f}s (RTO {f'{rto:.2f}s' if rto is not None else 'not measured'}, "
                f"teardown {teardown_times[-1]:.2f}s) verdict {result.verdict.value} {result.codes()}\n  phases: {phases}"
            )
            return result.verdict.value == "PASS"

        for round_no in range(1, args.rounds + 1):
            # Alternate the order so a load spike on the shared machine does not always hit the same side.
            order = (bare_round, drill_round) if round_no % 2 else (drill_round, bare_round)
            for step in order:
                if step(round_no) is False:
                    print("the drill did not PASS on a healthy dump: the benchmark is void", file=sys.stderr)
                    return 1
            print(f"round {round_no}: bare pg_restore {bare_times[-1]:.2f}s")

        bare, whole = statistics.median(bare_times), statistics.median(drill_times)
        self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(
            f"\nrows {rows['total']:,} · dump {size / 1e6:.1f} MB · pg_restore {pg_restore.version} -j {args.jobs}"
        )
        print(f"bare pg_restore (median of {args.rounds}): {bare:.2f}s")
        print(
            f"whole drill     (median of {args.rounds}): {whole:.2f}s   (+ teardown, untimed like the bare drop: "
            f"{statistics.median(teardown_times):.2f}s)"
        )
        print(f"ratio drill / bare: {whole / bare:.2f}x (target <= 1.30x)")
        print(
            f"peak RSS: drill process {self_rss:.0f} MB, largest child (pg_dump/pg_restore/psql) {child_rss:.0f} MB"
        )
        return 0 if args.smoke or whole / bare <= 1.3 else 1
    finally:
        for db in made:
            try:
                _exec(admin, f"drop database if exists {db} with (force)")
            except Exception as exc:  # cleanup must go on for the other databases
                print(f"could not drop {db}: {exc}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        if owned:
            owned[0].cleanup()
            shutil.rmtree(owned[1], ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
