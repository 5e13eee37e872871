"""Real failures before a drill could run leave an ERROR record with the cause, and a page that says it.

One native compose stack (tests/deploy/stack.py), three real failures, in order:

0. API server not reachable at first start: scheduler, dag-processor, triggerer
   and worker run, the API server does not yet; a data-quality DAG is unpaused
   and its run queued -> the run ends with a ledger record (ERROR
   ``DRILL_NOT_RUN`` and a page when it failed);
1. import error: the Celery worker is restarted with DRILLBOOK_CATALOGUE pointing
   at a broken file, so it cannot import any drill DAG; a certificates run fails
   without starting its drill -> the ledger has an ERROR ``DRILL_NOT_RUN``
   record for that run and on-call got a page naming the failure;
2. worker killed: with a healthy worker again, a backup-restore run whose
   restore is slowed by a ``pg_sleep`` check is started; while
   ``restore_and_verify`` runs, the worker's whole process tree is SIGKILLed;
   the scheduler's heartbeat detection (timeout shortened to 20 s) fails the
   task; a new worker runs the teardown -> ERROR record naming the worker that
   held the task, a page that says it, and no scratch database left;
3. the next run of that drill: its ``reap_scratch`` runs clean on the new worker.

The stack's copy of the catalogue sets ``retries: 0`` so that the first failure
is the final one (with retries, the record comes after the last try).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.api import AirflowApi
from tests.deploy.stack import AIRFLOW_SERVICES, NativeStack
from tests.support.slack_emulator import SlackEmulator

pytestmark = pytest.mark.e2e

RESTORE_DAG = "dr_backup_restore__shop_nightly"
CERT_DAG = "dr_certificates__demo_certificates"
QUALITY_DAG = "dr_data_quality__shop_orders_quality"
SLOW_CHECK = """        - name: slow enough to be killed
          sql: "select 1 from pg_sleep(90)"
          expect: "== 1"
"""
BROKEN_CATALOGUE = "version: 1\ndrills:\n  - name: broken\n    kind: no_such_kind\n"


class FailureStack(NativeStack):
    """The compose stack with the scheduler's heartbeat detection shortened (seconds, not 5 minutes)."""

    worker_env: dict[str, str] = {}
    scratch_dsn: str | None = None

    def native_extras(self, service: str) -> dict[str, str]:
        extras = super().native_extras(service)
        extras |= {
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__WORKERS__MISSING_DAG_RETRIES": "1",
            "AIRFLOW__WORKERS__MISSING_DAG_RETRY_DELAY": "3",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
        }
        if self.scratch_dsn:
            extras["AIRFLOW_CONN_DRILLBOOK_SCRATCH"] = self.scratch_dsn
        if service.startswith("airflow-worker"):
            extras |= self.worker_env
        return extras

    def prepare_catalogue(self) -> None:
        path = self.opt / "include" / "drills.yaml"
        text = path.read_text()
        assert "  retries: 1\n" in text and '          expect: "> 0"\n' in text
        text = text.replace("  retries: 1\n", "  retries: 0\n", 1)
        text = text.replace('          expect: "> 0"\n', '          expect: "> 0"\n' + SLOW_CHECK, 1)
        path.write_text(text)

    def kill_workers(self) -> int:
        """SIGKILL every process of the stack's workers (Celery parent, pool, task supervisors, tasks)."""
        import psutil

        killed = 0
        for proc in psutil.process_iter(["pid"]):
            try:
                env = proc.environ()
                if env.get("DRILLBOOK_E2E_STACK") == self.marker and env.get("HOSTNAME", "").startswith(
                    "airflow-worker"
                ):
                    proc.kill()
                    killed += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        for name in [n for n in self.procs if n.startswith("airflow-worker")]:
            proc = self.procs.pop(name)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
        return killed

    def start_without_api(self) -> None:
        """As the first `make up` did: scheduler, dag-processor, triggerer and worker up, the API server not yet."""
        for service in AIRFLOW_SERVICES:
            if service != "airflow-apiserver":
                self.spawn(service, self.argv_of(service), self.env_of(service))
        self.spawn("airflow-worker", self.argv_of("airflow-worker"), self.env_of("airflow-worker"))

    def start_api(self) -> None:
        self.spawn("airflow-apiserver", self.argv_of("airflow-apiserver"), self.env_of("airflow-apiserver"))

    def restart_worker(self, tag: str, **env: str) -> None:
        self.kill_workers()
        self.worker_env = dict(env)
        argv = self.argv_of("airflow-worker") + ["--pid", str(self.root / f"worker-{tag}.pid")]
        self.spawn(f"airflow-worker-{tag}", argv, self.env_of("airflow-worker"))


def drill_records(ledger_dsn: str, dag_id: str, run_id: str) -> list:
    from drillbook.ledger.store import Ledger

    return [
        r
        for r in Ledger(ledger_dsn).query(record_type="drill", limit=1000)
        if r.dag_id == dag_id and r.run_id == run_id
    ]


def metadata_runs(deployment, dag_id: str) -> dict[str, str]:
    """run_id -> state straight from the metadata DB (there is no API server to ask yet)."""
    import psycopg

    dsn = f"postgresql://{deployment.role}:{deployment.password}@127.0.0.1:5432/{deployment.dotenv['AIRFLOW_DB_NAME']}"
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return {
            r[0]: r[1] for r in conn.execute("select run_id, state from dag_run where dag_id = %s", (dag_id,))
        }


def unpause_in_metadata(deployment, dag_id: str) -> bool:
    """What `airflow dags unpause` does (the CLI takes tens of seconds per call under load): True once the DAG existed."""
    import psycopg

    dsn = f"postgresql://{deployment.role}:{deployment.password}@127.0.0.1:5432/{deployment.dotenv['AIRFLOW_DB_NAME']}"
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return conn.execute("update dag set is_paused = false where dag_id = %s", (dag_id,)).rowcount == 1


def bounded_wait(what: str, probe, *, timeout: float, every: float = 3, alive=lambda: None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()
        value = probe()
        if value:
            return value
        time.sleep(every)
    return None


def first_run(api: AirflowApi, dag_id: str) -> str:
    runs = api.wait_until(f"a run of {dag_id}", lambda: api.runs(dag_id), timeout=120, every=2)
    return str(runs[0]["dag_run_id"])


def wait_run(api: AirflowApi, dag_id: str, run_id: str, *, timeout: float) -> dict:
    def ended() -> dict | None:
        run = next((r for r in api.runs(dag_id) if r["dag_run_id"] == run_id), None)
        return run if run and run["state"] in ("success", "failed") else None

    return api.wait_until(f"{dag_id} {run_id} to end", ended, timeout=timeout, every=3)


def ti_state(api: AirflowApi, dag_id: str, run_id: str, task_id: str) -> str | None:
    return next((t["state"] for t in api.task_instances(dag_id, run_id) if t["task_id"] == task_id), None)


@pytest.mark.timeout(1500)
def test_import_error_and_killed_worker_leave_an_error_record_and_a_page(work_dir: Path, deployment) -> None:
    from drillbook.sample.webhook_receiver import WebhookReceiver
    from tests.deploy.conftest import scratch_databases

    slack = SlackEmulator().start()
    hook_token = secrets.token_urlsafe(16)
    receiver = WebhookReceiver(port=0, token=hook_token).start()
    deployment.dotenv |= {
        "AIRFLOW_CONN_DRILLBOOK_SLACK": json.dumps(
            {"conn_type": "slack", "password": slack.token, "extra": {"base_url": slack.base_url}}
        ),
        "AIRFLOW_CONN_DRILLBOOK_DEMO_WEBHOOK": json.dumps(
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": receiver.port,
                "schema": "http",
                "password": hook_token,
            }
        ),
    }
    started = time.monotonic()
    try:
        with FailureStack(work_dir / "stack", deployment.dotenv, var=deployment.var) as stack:
            stack.prepare_catalogue()
            stack.init()

            # 0. API server not reachable at first start: a run queued before it listens ends with a record
            stack.start_without_api()
            unpaused = bounded_wait(
                "the data-quality DAG to be parsed, then unpaused",
                lambda: unpause_in_metadata(deployment, QUALITY_DAG),
                timeout=300,
                every=3,
                alive=stack.check_alive,
            )
            assert unpaused, f"{QUALITY_DAG} was not parsed"
            first = bounded_wait(
                "the first scheduled run",
                lambda: metadata_runs(deployment, QUALITY_DAG),
                timeout=120,
                alive=stack.check_alive,
            )
            assert first, "unpausing queued no run"
            [no_api_run] = list(first)
            ended_without_api = bounded_wait(
                "the run to end without an API server",
                lambda: metadata_runs(deployment, QUALITY_DAG).get(no_api_run) in ("success", "failed"),
                timeout=150,
            )
            stack.start_api()
            api = AirflowApi(
                f"http://127.0.0.1:{stack.api_port}",
                username="admin",
                password=deployment.dotenv["AIRFLOW_ADMIN_PASSWORD"],
                alive=stack.check_alive,
            )
            api.login()

            def wait_pages(dag: str, what: str) -> Any:
                # the record is written first (evidence first), then the page is posted: wait for it, bounded
                return api.wait_until(
                    what,
                    lambda: [m for m in slack.posted("#dr-oncall") if dag in m.text],
                    timeout=60,
                    every=1,
                )

            api.wait_until(
                "the drill DAGs to be parsed", lambda: {RESTORE_DAG, CERT_DAG} <= set(api.dags()), timeout=300
            )
            no_api = wait_run(api, QUALITY_DAG, no_api_run, timeout=300)
            records = api.wait_until(
                "a record of the run queued before the API server listened",
                lambda: drill_records(deployment.ledger_dsn, QUALITY_DAG, no_api_run),
                timeout=120,
            )
            print(
                f"\nAPI server down: the run {'ended' if ended_without_api else 'waited'} before it started, then "
                f"{no_api['state']}; record {records[0].verdict} {records[0].codes}: "
                f"{(records[0].result.get('findings') or [{}])[0].get('message', '')[:300]}"
            )
            if no_api["state"] == "failed":
                assert records[0].verdict == "ERROR" and records[0].codes == ["DRILL_NOT_RUN"]
                assert any(m for m in slack.posted("#dr-oncall") if QUALITY_DAG in m.text)
            api.client.patch(f"/api/v2/dags/{QUALITY_DAG}", json={"is_paused": True}).raise_for_status()

            # 1. import error on the worker
            broken = stack.root / "broken-drills.yaml"
            broken.write_text(BROKEN_CATALOGUE)
            stack.restart_worker("broken", DRILLBOOK_CATALOGUE=str(broken))
            api.unpause(CERT_DAG)  # queues the latest interval, as a first start does
            run = first_run(api, CERT_DAG)
            ended = wait_run(api, CERT_DAG, run, timeout=300)
            assert ended["state"] == "failed", stack.tail("airflow-worker-broken")
            [record] = api.wait_until(
                "the import error's ERROR record",
                lambda: drill_records(deployment.ledger_dsn, CERT_DAG, run),
                timeout=120,
            )
            assert record.verdict == "ERROR" and record.codes == ["DRILL_NOT_RUN"]
            import_cause = record.result["findings"][0]["message"]
            print(f"\nimport error -> {import_cause}")
            assert "no_such_kind" in import_cause or "import" in import_cause.lower(), import_cause
            pages = wait_pages(CERT_DAG, "the import error's page")
            assert pages and import_cause[:60] in str(pages[-1].blocks), [m.text for m in slack.posted()]
            import_done = time.monotonic() - started

            # 2. worker killed while restore_and_verify runs
            stack.restart_worker("healthy")
            api.unpause(RESTORE_DAG)
            run = first_run(api, RESTORE_DAG)
            api.wait_until(
                "restore_and_verify to run",
                lambda: ti_state(api, RESTORE_DAG, run, "restore_and_verify") == "running",
                timeout=300,
                every=2,
            )
            time.sleep(5)  # inside the drill: the scratch database exists, the restore is under way
            held = scratch_databases(deployment.role)
            assert held, "the run's scratch database should exist while it restores"
            killed_at = time.monotonic()
            assert stack.kill_workers() > 0
            api.wait_until(
                "the scheduler to fail the task of the killed worker",
                lambda: ti_state(api, RESTORE_DAG, run, "restore_and_verify") == "failed",
                timeout=240,
            )
            detected = time.monotonic() - killed_at
            stack.restart_worker("after-kill")
            ended = wait_run(api, RESTORE_DAG, run, timeout=300)
            assert ended["state"] == "failed"
            [record] = api.wait_until(
                "the killed worker's ERROR record",
                lambda: drill_records(deployment.ledger_dsn, RESTORE_DAG, run),
                timeout=120,
            )
            assert record.verdict == "ERROR" and record.codes == ["DRILL_NOT_RUN"]
            kill_cause = record.result["findings"][0]["message"]
            print(f"worker killed -> {kill_cause}")
            assert "airflow-worker" in kill_cause and "restore_and_verify" in kill_cause, kill_cause
            assert "ends without an error" in kill_cause and "heartbeat" in kill_cause, kill_cause
            pages = wait_pages(RESTORE_DAG, "the killed worker's page")
            assert pages and kill_cause[:60] in str(pages[-1].blocks), [m.text for m in slack.posted()]

            # 3. the next run (the scheduled one unpausing queued) reaps whatever the killed worker left
            # (the teardown, run by the new worker, may already have dropped it)
            killed_run = run
            api.trigger(RESTORE_DAG)
            api.wait_until(
                "the next run's reap_scratch",
                lambda: any(
                    ti_state(api, RESTORE_DAG, r["dag_run_id"], "reap_scratch") == "success"
                    for r in api.runs(RESTORE_DAG)
                    if r["dag_run_id"] != killed_run
                ),
                timeout=300,
                every=3,
            )
            left = [d for d in scratch_databases(deployment.role) if d in held]
            assert left == [], f"the killed run's scratch database outlived the next run's reaper: {left}"
            print(
                f"import-error case {import_done:.0f}s from cold start; kill detected after {detected:.0f}s; "
                f"whole test {time.monotonic() - started:.0f}s"
            )
            api.close()
    finally:
        receiver.stop()
        slack.stop()
