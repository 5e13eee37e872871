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
process (the drill's own memory) and of its largest child. The ratio depends on the
backup's size (``--rows``; the drill's costs are mostly fixed per run): report it with
every figure.

    .venv/bin/python bench/barman.py [--rows 2000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
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
            time.sleep(0.05)  # as often as the drill polls: the baseline must not lose time waiting
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
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows in the backup (2M: about 230 MB)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="toy size: proves the benchmark still runs")
    args = parser.parse_args(argv)

    from tests.backup_restore.physical.barman_fixture import make_barman_repo

    from physical_rounds import compare_rounds, physical_drill  # bench/, the loop both physical benches share

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
        drill = physical_drill("bench_barman", {"barman": spec}, args.rows)
        if compare_rounds(
            drill,
            lambda: bare_recover(repo, backup_id),
            rounds=args.rounds,
            bare_label="bare barman recover+recovery",
            tools="barman/postgres tools",
        ):
            return 1
    finally:
        built.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
