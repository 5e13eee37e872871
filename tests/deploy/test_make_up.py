"""``make up`` on a fresh clone: quiet, lossless, and stopped by SIGTERM.

Runs ``python -m scripts.demo --up`` (what ``make up`` runs) in a fresh copy of
the working tree (so its var/ starts empty, as in a fresh clone) on free ports: it must print the UI URL and the ledger DSN when ready,
have unpaused the drill DAGs only then, let every run that starts finish
without a failure and with a ledger record, page nobody about a missed drill,
and stop the whole process tree on SIGTERM.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.deploy.api import AirflowApi
from tests.deploy.stack import REPO, free_port

pytestmark = pytest.mark.e2e


def marked(marker: str) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if (
                proc.info["status"] != psutil.STATUS_ZOMBIE
                and proc.environ().get("DRILLBOOK_E2E_STACK") == marker
            ):
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.mark.timeout(1500)
def test_make_up_prints_where_things_are_runs_without_failure_and_stops_on_sigterm(work_dir):
    port, marker = free_port(), uuid.uuid4().hex
    clone = work_dir / "clone"
    shutil.copytree(
        REPO,
        clone,
        ignore=shutil.ignore_patterns(".git", ".venv", ".tools", "var", "__pycache__", "*_cache", "logs"),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DRILLBOOK_", "PYTEST"))}
    env |= {
        "PYTHONPATH": str(clone / "plugins"),
        "DRILLBOOK_AIRFLOW_PORT": str(port),
        "DRILLBOOK_DEMO_WEBHOOK_PORT": str(free_port()),
        "DRILLBOOK_ADMIN_PASSWORD": "up-test-pw",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "DRILLBOOK_E2E_STACK": marker,
    }
    out = (work_dir / "make-up.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.demo", "--up"],
        cwd=clone,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log = work_dir / "make-up.log"
    try:
        deadline = time.monotonic() + 900
        while "== ready:" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-4000:]
            time.sleep(3)
        text = log.read_text()
        assert f"== ready: Airflow UI http://localhost:{port}" in text, text[-4000:]
        dsn = re.search(r"export DRILLBOOK_LEDGER_DSN='([^']+)'", text)
        assert dsn, text[-3000:]
        api = AirflowApi(
            f"http://127.0.0.1:{port}", username="admin", password="up-test-pw", alive=lambda: None
        )
        api.login(timeout=60)
        dags = api.dags()
        drills = sorted(
            d for d in dags if d.startswith("dr_") and "__" in d and not d.startswith("dr_digest")
        )
        assert drills and not any(dags[d]["is_paused"] for d in drills)
        runs = api.wait_for_runs(drills, timeout=600)
        failed = [(d, r["dag_run_id"]) for d, rs in runs.items() for r in rs if r["state"] != "success"]
        assert failed == [], f"a first make up produced failed runs: {failed}"
        from drillbook.ledger.store import Ledger

        with Ledger(dsn.group(1)) as ledger:
            recorded = {(r.dag_id, r.run_id) for r in ledger.query(record_type="drill", limit=5000)}
            missed = [r for r in ledger.query(record_type="watchdog") if "DRILL_MISSED" in r.codes]
        assert {(d, r["dag_run_id"]) for d, rs in runs.items() for r in rs} <= recorded
        assert missed == [], "the watchdog paged DRILL_MISSED on a first start"
        api.close()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)  # SIGTERM to make up itself, as a service manager would
        try:
            proc.wait(timeout=120)
        finally:
            out.close()
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert "Airflow stopped" in log.read_text()
    deadline = time.monotonic() + 30
    while marked(marker) and time.monotonic() < deadline:
        time.sleep(1)
    leftovers = marked(marker)
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert leftovers == [], "processes of make up outlived its SIGTERM"
