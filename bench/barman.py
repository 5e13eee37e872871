"""Benchmark: the whole Barman drill vs a bare ``barman recover`` + start + recovery of the same backup.

Builds a real PostgreSQL 15 source backed up by a real Barman server (the test
harness's ``barman_fixture.make_barman_repo``; as root both run as the ``barman``
OS user) with ``--rows`` rows in the backup and a few rows in WAL after it; then in
one process alternates
- bare: ``barman recover SERVER ID DIR`` (an operator's restore), ``pg_ctl start``
  on a private socket, wait until recovery ended (``pg_is_in_recovery()`` false);
- drill: ``run_physical`` (locate, WAL check, ``barman recover --no-get-wal``,
  safety, recover, the verify ladder with minimum rows and amcheck, measure,
  teardown).
Prints each timing, the ratio drill/bare (target <= 1.3) and the peak RSS of this
process (the drill's own memory) and of its largest child.

    .venv/bin/python bench/barman.py [--rows 2000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
sys.path.insert(0, str(REPO))


def bare_recover(repo, backup_id: str) -> float:  # type: ignore[no-untyped-def]
    """barman recover + start + recovery to the end of the copied WAL, as an operator would; seconds."""
    from tests.backup_restore.physical.barman_fixture import PG_BIN, run_as

    root = Path(tempfile.mkdtemp(prefix="drillbook-bench-bare-"))
    root.chmod(0o755)
    (root / "sock").mkdir()
    if repo.user:  # barman recover writes root/data and PostgreSQL its socket as that user
        shutil.chown(root / "sock", repo.user)
        shutil.chown(root, repo.user)
    began = time.monotonic()
    try:
        repo.barman("recover", repo.server, backup_id, str(root / "data"))
        opts = f"-c listen_addresses='' -c unix_socket_directories='{root / 'sock'}' -c port=5432 -c archive_mode=off"
        run_as(
            repo.user,
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(root / "data"),
                "-w",
                "-t",
                "3600",
                "-o",
                opts,
                "-l",
                str(root / "sock" / "log"),
                "start",
            ],
            timeout=3700,
        )
        while True:
            out = run_as(
                repo.user,
                [
                    str(PG_BIN / "psql"),
                    "-X",
                    "-At",
                    "-h",
                    str(root / "sock"),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                    "select pg_is_in_recovery()",
                ],
            )
            if out.stdout.strip() == "f":
                break
            time.sleep(0.2)
        return time.monotonic() - began
    finally:
        run_as(
            repo.user,
            [str(PG_BIN / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-w", "stop"],
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="toy size: proves the benchmark still runs")
    args = parser.parse_args(argv)

    from tests.backup_restore.physical.barman_fixture import make_barman_repo

    from drillbook.drills.backup_restore.catalogue import BackupRestoreDrill
    from drillbook.drills.backup_restore.physical.drill import run_physical

    root = Path(tempfile.mkdtemp(prefix="drillbook-bench-barman-"))
    built = make_barman_repo(root, bulk_rows=args.rows)
    try:
        repo = next(built)
        backup_id = max(
            b["backup_id"]
            for b in json.loads(repo.barman("-f", "json", "list-backups", repo.server).stdout)[repo.server]
        )
        size = repo.psql("select pg_size_pretty(pg_database_size('postgres'))")
        print(f"source: {args.rows:,} rows in the backup, rows after it in WAL, database {size}")
        spec = {
            "server": repo.server,
            "config": str(repo.config),
            **({"os_user": repo.user} if repo.user else {}),
        }
        drill = BackupRestoreDrill.model_validate(
            {
                "name": "bench_barman",
                "kind": "backup_restore",
                "schedule": "@daily",
                "backup": {"barman": spec},
                "scratch": {"connection": "drillbook_scratch"},
                "objectives": {"rto": "4h", "rpo": "26h"},
                "restore": {"timeout": "1h"},
                "verify": {"min_rows": {"public.bench": args.rows}, "amcheck": True},
            }
        )
        bare_times, drill_times = [], []
        state = Path(tempfile.mkdtemp(prefix="drillbook-bench-state-"))
        for i in range(args.rounds):
            bare_times.append(bare_recover(repo, backup_id))
            t0 = time.monotonic()
            result = run_physical(drill=drill, state_dir=state)
            drill_times.append(time.monotonic() - t0)
            if result.verdict.value != "PASS":
                print(
                    f"drill verdict {result.verdict.value}: {[(f.code, f.message[:200]) for f in result.findings]}"
                )
                return 1
            print(
                f"round {i + 1}: bare {bare_times[-1]:.1f}s, drill {drill_times[-1]:.1f}s "
                f"(phases: {', '.join(f'{p.name} {p.seconds:.1f}s' for p in result.phases)})"
            )
        shutil.rmtree(state, ignore_errors=True)
        bare, whole = statistics.median(bare_times), statistics.median(drill_times)
        self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"bare barman recover+recovery median {bare:.2f}s, whole drill median {whole:.2f}s")
        print(f"ratio drill / bare: {whole / bare:.2f}x (target <= 1.30x)")
        print(
            f"peak RSS: drill process {self_rss:.0f} MB, largest child (barman/postgres tools) {child_rss:.0f} MB"
        )
    finally:
        built.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
