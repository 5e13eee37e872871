"""`make up` runs the compose services natively: airflow standalone serves drillbook's DAGs.

Starts scheduler, dag-processor, api-server and triggerer (``airflow standalone``)
on a free loopback port with drillbook's dags/ and plugins/, logs in through the
REST API and checks that every catalogue drill has its DAG and there is no import
error. Bounded: gives up after 240 s and always stops the whole process group.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, *, token: str | None = None, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_airflow_standalone_serves_every_drill_dag(tmp_path):
    port = free_port()
    home = tmp_path / "airflow"
    home.mkdir()
    from scripts.demo import airflow_environment, write_admin_password

    write_admin_password(home, "test-admin-pw")
    env = {
        **os.environ,
        **airflow_environment(home, port=port),  # exactly what `make up` runs with
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    log = (tmp_path / "standalone.log").open("w")
    proc = subprocess.Popen(
        ["airflow", "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        token = None
        dag_ids: set[str] = set()
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "standalone.log").read_text()[-3000:]
            try:
                if token is None:
                    token = call(
                        f"{base}/auth/token", body={"username": "admin", "password": "test-admin-pw"}
                    )["access_token"]
                dag_ids = {d["dag_id"] for d in call(f"{base}/api/v2/dags?limit=100", token=token)["dags"]}
                if {"dr_backup_restore__shop_nightly", "dr_watchdog"} <= dag_ids:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError):
                pass
            time.sleep(2)
        assert token, "the api-server never answered a login"
        from drillbook.catalogue import load_catalogue

        expected = {f"dr_{d.kind}__{d.name}" for d in load_catalogue(REPO / "include" / "drills.yaml").drills}
        assert expected <= dag_ids
        errors = call(f"{base}/api/v2/importErrors", token=token)
        assert errors["total_entries"] == 0, errors
        health = call(f"{base}/api/v2/monitor/health")
        assert health["metadatabase"]["status"] == "healthy"
        assert health["scheduler"]["status"] == "healthy"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
