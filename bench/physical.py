"""Benchmark: the whole pgBackRest drill vs a bare ``pgbackrest restore`` + start + recovery of the same backup.

Builds a real PostgreSQL 15 source archiving into a pgBackRest posix repository
(the test harness's ``make_source``; as root it runs as the ``postgres`` OS user),
loads ``--rows`` rows (set-based SQL), takes a full backup, writes more rows and
switches WAL; then in one process alternates
- bare: ``pgbackrest restore --archive-mode=off`` into a fresh directory, ``pg_ctl
  start`` on a private socket, wait until recovery ended (``pg_is_in_recovery()`` false);
- drill: ``run_physical`` (locate, WAL check, restore, safety, recover, the verify
  ladder with minimum rows and amcheck, measure, teardown).
Prints each timing (the bare run's restore / start / recovery too), the ratio drill/bare
(target <= 1.3) and the peak RSS of this process (the drill's own memory) and of its largest child.

The backup's size is an option, and the ratio depends on it: the drill's fixed costs (safety
checks, heap check and ladder, teardown) are a few tenths of a second whatever the size, so a
small backup shows them and a large one hides them. The shipped default is 2,000,000 rows
(about 230 MB of database); ``--size-mb`` picks the row count for a target size instead
(about 8,700 rows per MB: bigint key, md5 text, timestamptz, primary key index). Report
the size with every figure. ``--vacuum`` runs a plain VACUUM before the backup (a table autovacuum
has visited: hint bits set, visibility map written), so the drill's first scan does not write every
page back; it is an option reported alongside, never the shipped default.

    .venv/bin/python bench/physical.py [--rows 2000000 | --size-mb 1000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
sys.path.insert(0, str(REPO / "tests" / "backup_restore" / "physical"))
#: rows of ``public.bench`` per MB of database (1,000,000 rows measured 115 MB)
ROWS_PER_MB = 8_700


def bare_restore(src, pg15: Path) -> float:  # type: ignore[no-untyped-def]
    """pgbackrest restore + start + recovery to the end of the archive, as an operator would; seconds."""
    root = Path(tempfile.mkdtemp(prefix="drillbook-bench-bare-"))
    os.chown(root, src.user.pw_uid, src.user.pw_gid)
    began = time.monotonic()
    marks = [began]
    try:
        src.pgbackrest(f"--pg1-path={root / 'data'}", "--archive-mode=off", "restore", timeout=3600)
        marks.append(time.monotonic())
        opts = f"-c listen_addresses='' -c unix_socket_directories='{root}' -c port=5432 -c archive_mode=off"
        src.run(
            [
                str(pg15 / "pg_ctl"),
                "-D",
                str(root / "data"),
                "-w",
                "-t",
                "3600",
                "-o",
                opts,
                "-l",
                str(root / "server.log"),
                "start",
            ],
            timeout=3700,
        )
        marks.append(time.monotonic())
        while True:
            out = src.run(
                [
                    str(pg15 / "psql"),
                    "-X",
                    "-At",
                    "-h",
                    str(root),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                    "select pg_is_in_recovery()",
                ]
            ).strip()
            if out == "f":
                break
            time.sleep(0.05)  # as often as the drill polls: the baseline must not lose time waiting
        marks.append(time.monotonic())
        print(
            f"  bare: restore {marks[1] - marks[0]:.2f}s, start {marks[2] - marks[1]:.2f}s, "
            f"recovery {marks[3] - marks[2]:.2f}s"
        )
        return marks[3] - began
    finally:
        subprocess.run(
            [str(pg15 / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            user=src.user.pw_uid,
            group=src.user.pw_gid,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows in the backup (2M: about 230 MB)")
    parser.add_argument("--size-mb", type=int, help="backup size instead of --rows (about 8,700 rows per MB)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="toy size: proves the benchmark still runs")
    parser.add_argument(
        "--vacuum",
        action="store_true",
        help="steady state: plain VACUUM (what autovacuum does) before the backup, so the drill's first scan "
        "does not set and write every row's hint bits; NOT the shipped figure (off by default, comparable with "
        "earlier runs)",
    )
    args = parser.parse_args(argv)
    if args.size_mb:
        args.rows = args.size_mb * ROWS_PER_MB

    from conftest import PG15_BIN, STANZA, make_source  # the test harness's real source cluster
    from physical_rounds import compare_rounds, physical_drill  # bench/, the loop both physical benches share

    src = make_source()
    try:
        src.sql(
            "create table public.bench(id bigint primary key, payload text not null, at timestamptz default now())"
        )
        src.sql(
            f"insert into public.bench(id, payload) select g, md5(g::text) from generate_series(1, {args.rows}) g"
        )
        if args.vacuum:
            src.sql("vacuum public.bench")
        src.full_backup()
        src.sql(
            f"insert into public.bench(id, payload) select g, md5(g::text) from generate_series({args.rows + 1}, "
            f"{args.rows + max(1, args.rows // 20)}) g"
        )
        src.insert_marker("bench_end")
        src.switch_wal()
        size = src.sql("select pg_size_pretty(pg_database_size('postgres'))")
        backup_size = src.sql("select pg_size_pretty(sum(pg_database_size(datname))) from pg_database")
        print(
            f"source: {args.rows:,} rows + 5% after the backup, database {size}, cluster {backup_size}"
            f"{', VACUUM before the backup (steady state, not the shipped figure)' if args.vacuum else ''}"
        )
        drill = physical_drill(
            "bench_physical", {"pgbackrest": {"stanza": STANZA, "config": str(src.config)}}, args.rows
        )
        if compare_rounds(
            drill,
            lambda: bare_restore(src, PG15_BIN),
            rounds=args.rounds,
            bare_label="bare restore+recovery",
            tools="pgbackrest/postgres tools",
        ):
            return 1
    finally:
        src.stop()
        shutil.rmtree(src.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
