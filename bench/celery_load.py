"""Benchmark the Celery deployment: 50 drill runs queued at once across 2 Celery workers.

Starts docker-compose.yaml's services natively (tests/deploy/stack.py: the
compose file's own commands and environment; Redis on 127.0.0.1:6379,
PostgreSQL 15 on 127.0.0.1:5432) with two ``airflow celery worker`` processes
and a catalogue of ``--backup-restore`` backup-restore drills and
``--runs`` minus that many certificate drills (one DAG each, so they can run at
once: every drill DAG has max_active_runs=1). Baseline, measured in the same
run: one certificates run alone. Then every DAG is triggered at once and the
benchmark checks: every run succeeded, every run has its ledger record, the
chain verifies and did not fork (seq contiguous, one head), no two restores
shared a scratch database, no scratch database is left. Prints wall time, the
ratio against the baseline and the peak RSS of each worker's process tree.

    python bench/celery_load.py [--runs 50] [--backup-restore 10]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]


def catalogue_for(shipped: str, *, certificates: int, restores: int) -> str:
    """The shipped catalogue with its backup-restore and certificates drills repeated under new names."""
    import yaml

    doc = yaml.safe_load(shipped)
    by_kind = {d["kind"]: d for d in doc["drills"]}
    drills = []
    never = "0 0 29 2 *"  # next due in 2028: unpausing queues no scheduled run beside the triggered one
    for n in range(1, restores + 1):
        drills.append({**by_kind["backup_restore"], "name": f"shop_restore_{n:02d}", "schedule": never})
    for n in range(1, certificates + 1):
        drills.append({**by_kind["certificates"], "name": f"demo_certs_{n:02d}", "schedule": never})
    doc["drills"] = drills
    doc["defaults"]["retries"] = 0
    return yaml.safe_dump(doc, sort_keys=False)


class PeakRss:
    """Samples the RSS of each worker's process tree every 0.5 s; keeps the peak per worker (MB)."""

    def __init__(self, procs: dict[str, int]):
        self.procs = procs
        self.peak = dict.fromkeys(procs, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            for name, pid in self.procs.items():
                try:
                    root = psutil.Process(pid)
                    rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                except psutil.Error:
                    continue
                self.peak[name] = max(self.peak[name], rss / 2**20)
            self._stop.wait(0.5)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="drill runs queued at once (default 50)")
    parser.add_argument(
        "--backup-restore", type=int, default=10, help="how many of them are backup-restore runs (default 10)"
    )
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    restores, certificates = args.backup_restore, args.runs - args.backup_restore
    if certificates < 1 or restores < 0:
        parser.error(f"--runs must exceed --backup-restore (got {args.runs} and {args.backup_restore})")

    import tempfile

    import redis
    from tests.deploy.api import AirflowApi
    from tests.deploy.conftest import REDIS_URL, provisioned, scratch_databases
    from tests.deploy.stack import NativeStack
    from tests.support.slack_emulator import SlackEmulator

    from drillbook.ledger.store import Ledger

    redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).flushdb()
    redis_db = int(REDIS_URL.rsplit("/", 1)[1])
    slack = SlackEmulator().start()
    import json

    with (
        tempfile.TemporaryDirectory(prefix="drillbook-bench-celery-") as tmp,
        provisioned(Path(tmp), redis_db) as dep,
    ):
        dep.dotenv |= {
            "AIRFLOW_CONN_DRILLBOOK_SLACK": json.dumps(
                {"conn_type": "slack", "password": slack.token, "extra": {"base_url": slack.base_url}}
            ),
            "AIRFLOW_CONN_DRILLBOOK_DEMO_WEBHOOK": json.dumps(
                {"conn_type": "http", "host": "127.0.0.1", "port": 9, "password": "unused"}
            ),
        }
        with NativeStack(Path(tmp) / "stack", dep.dotenv, workers=2, var=dep.var) as stack:
            shipped = (REPO / "include" / "drills.yaml").read_text()
            (stack.opt / "include" / "drills.yaml").write_text(
                catalogue_for(shipped, certificates=certificates, restores=restores)
            )
            stack.init()
            stack.start()
            api = AirflowApi(
                f"http://127.0.0.1:{stack.api_port}",
                username="admin",
                password=dep.dotenv["AIRFLOW_ADMIN_PASSWORD"],
                alive=stack.check_alive,
            )
            api.login()
            names = [f"dr_backup_restore__shop_restore_{n:02d}" for n in range(1, restores + 1)]
            names += [f"dr_certificates__demo_certs_{n:02d}" for n in range(1, certificates + 1)]
            api.wait_until(
                f"{len(names)} DAGs to be parsed", lambda: set(names) <= set(api.dags()), timeout=600
            )

            baseline_dag = names[-1]
            started = time.monotonic()
            api.trigger(baseline_dag)
            api.unpause(baseline_dag)
            api.wait_for_runs([baseline_dag], timeout=600)
            baseline = time.monotonic() - started
            print(f"baseline: one certificates run alone                {baseline:7.1f}s", flush=True)

            workers = {n: p.pid for n, p in stack.procs.items() if n.startswith("airflow-worker")}
            with PeakRss(workers) as rss:
                started = time.monotonic()
                others = [n for n in names if n != baseline_dag]
                for dag_id in [*others, baseline_dag]:
                    api.trigger(dag_id)
                for dag_id in others:
                    api.unpause(dag_id)
                runs = api.wait_for_runs(names, timeout=args.timeout)
                elapsed = time.monotonic() - started
            all_runs = [(d, r) for d, rs in runs.items() for r in rs]
            failed = [(d, r["dag_run_id"], r["state"]) for d, r in all_runs if r["state"] != "success"]
            hosts = {
                ti["hostname"]
                for d, r in all_runs
                for ti in api.task_instances(d, r["dag_run_id"])
                if ti["state"] == "success"
            }
            with Ledger(dep.ledger_dsn) as ledger:
                records = ledger.query(limit=100000)
                drill_rows = [r for r in records if r.record_type == "drill"]
                missing = [
                    (d, r["dag_run_id"])
                    for d, r in all_runs
                    if not any(x.dag_id == d and x.run_id == r["dag_run_id"] for x in drill_rows)
                ]
                seqs = [r.seq for r in records]
                verify = ledger.verify()
            scratch = [
                r.result.get("details", {}).get("scratch_database")
                for r in drill_rows
                if r.kind == "backup_restore"
            ]
            scratch = [s for s in scratch if s]
            orphans = scratch_databases(dep.role)
            api.close()
            print(
                f"{len(all_runs)} runs ({restores} backup-restore + {certificates} certificates, plus the baseline's) "
                f"queued at once on 2 Celery workers: {elapsed:7.1f}s",
                flush=True,
            )
            print(
                f"ratio: wall time / ({len(all_runs) - 1} x one run alone)       {elapsed / (baseline * (len(all_runs) - 1)):.2f}x"
            )
            for name, peak in sorted(rss.peak.items()):
                print(f"peak RSS {name} (worker + its task processes)  {peak:8.0f} MB")
            print(
                f"task hosts: {sorted(hosts)}; ledger: {len(records)} records, chain {'verifies' if verify.ok else 'BROKEN: ' + verify.message}"
            )
        problems = []
        if failed:
            problems.append(f"failed runs: {failed[:5]}")
        if missing:
            problems.append(f"runs without a ledger record: {missing[:5]}")
        if seqs != list(range(seqs[0], seqs[0] + len(seqs))) or not verify.ok:
            problems.append("the ledger chain forked or has gaps")
        if len(scratch) != len(set(scratch)):
            problems.append(f"two restores shared a scratch database: {sorted(scratch)}")
        if orphans:
            problems.append(f"scratch databases left behind: {orphans}")
        if hosts - {"airflow-worker", "airflow-worker-2"}:
            problems.append(f"tasks ran outside the Celery workers: {sorted(hosts)}")
        leftovers = stack.leftovers()
        if leftovers:
            problems.append(f"processes outlived the stack: {leftovers}")
    slack.stop()
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
