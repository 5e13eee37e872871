"""docker-compose.yaml, run natively end to end: every drill of the shipped catalogue runs on a Celery worker.

From the compose file's own commands and environment (tests/deploy/stack.py):
airflow-init (migrate, admin password, validate, ledger init), then api-server,
scheduler, dag-processor, triggerer and ``airflow celery worker`` with Redis as
broker and PostgreSQL 15 as metadata DB. The demo environment (shop source,
its pg_dump backup, a certificate, a webhook receiver) and the Slack emulator
stand in for the outside world. Through the REST API: the drill DAGs appear
paused (DAGS_ARE_PAUSED_AT_CREATION), each is triggered and unpaused, every run
ends in success, every task instance that ran reports the worker's hostname,
the ledger holds a drill record for every run and verifies, no scratch
database is left, and no process of the stack outlives it.
"""

from __future__ import annotations

import json
import secrets
import time

import pytest

from drillbook.catalogue import load_catalogue
from tests.deploy.api import AirflowApi
from tests.deploy.stack import REPO, NativeStack
from tests.support.slack_emulator import SlackEmulator

pytestmark = pytest.mark.e2e


def drill_dag_ids() -> list[str]:
    catalogue = load_catalogue(REPO / "include" / "drills.yaml")
    return sorted(f"dr_{d.kind}__{d.name}" for d in catalogue.drills)


@pytest.mark.timeout(1800)
def test_every_drill_of_the_catalogue_runs_on_the_celery_worker(work_dir, deployment):
    from drillbook.ledger.store import Ledger
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
    wanted = drill_dag_ids()
    started = time.monotonic()
    try:
        with NativeStack(work_dir / "stack", deployment.dotenv, var=deployment.var) as stack:
            stack.init()
            stack.start()
            api = AirflowApi(
                f"http://127.0.0.1:{stack.api_port}",
                username="admin",
                password=deployment.dotenv["AIRFLOW_ADMIN_PASSWORD"],
                alive=stack.check_alive,
            )
            api.login()
            dags = api.wait_until(
                "the drill DAGs to be parsed",
                lambda: (d := api.dags()) and set(wanted) <= set(d) and d,
                timeout=300,
            )
            assert not api.import_errors()
            assert all(dags[d]["is_paused"] for d in wanted), (
                "a new DAG must start paused (DAGS_ARE_PAUSED_AT_CREATION)"
            )
            triggered = {d: api.trigger(d) for d in wanted}
            for dag_id in wanted:
                api.unpause(dag_id)
            runs = api.wait_for_runs(wanted, timeout=1200)
            ready_after = time.monotonic() - started
            ledger = Ledger(deployment.ledger_dsn)
            records = list(ledger.query(record_type="drill", limit=1000))
            for dag_id, dag_runs in runs.items():
                assert triggered[dag_id] in {r["dag_run_id"] for r in dag_runs}
                for run in dag_runs:
                    tis = api.task_instances(dag_id, run["dag_run_id"])
                    ran = [ti for ti in tis if ti["state"] in ("success", "failed")]
                    assert ran, f"{dag_id} {run['dag_run_id']}: no task ran"
                    for ti in ran:
                        assert ti["hostname"] == "airflow-worker", (
                            f"{dag_id}.{ti['task_id']} ran on {ti['hostname']!r}"
                        )
                    assert run["state"] == "success", (
                        f"{dag_id} {run['dag_run_id']}: {run['state']}\n{stack.tail('airflow-worker')}"
                    )
                    mine = [r for r in records if r.dag_id == dag_id and r.run_id == run["dag_run_id"]]
                    assert mine, f"no ledger record for {dag_id} {run['dag_run_id']}"
            report = ledger.verify()
            assert report.ok, report.message
            assert scratch_databases(deployment.role) == [], "a scratch database outlived its drill"
            api.close()
            print(
                f"\nnative compose stack: {len(wanted)} drill DAGs, {sum(len(r) for r in runs.values())} runs on the Celery worker "
                f"in {ready_after:.0f}s from a cold start"
            )
        assert stack.leftovers() == [], "processes of the stack outlived it"
    finally:
        receiver.stop()
        slack.stop()
