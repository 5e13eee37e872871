"""docker-compose.yaml is parsed (Docker does not run here); `make up` runs the same services natively."""

from __future__ import annotations

from pathlib import Path

import yaml

from drillbook.catalogue import load_catalogue

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def test_services_of_airflow_3_and_drillbook():
    services = compose()["services"]
    assert {"postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-worker", "airflow-triggerer", "airflow-init", "drillbook-db"} <= set(services)


def test_every_airflow_service_mounts_include_and_shares_one_jwt_secret():
    services = compose()["services"]
    airflow = {n: s for n, s in services.items() if n.startswith("airflow-")}
    for name, svc in airflow.items():
        mounts = [v.rsplit(":", 1)[1] for v in svc["volumes"]]
        assert "/opt/airflow/include" in mounts and "/opt/airflow/plugins" in mounts, name
        env = svc["environment"]
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${AIRFLOW_JWT_SECRET"), name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"


def test_connections_named_by_the_catalogue_are_provided_without_literal_secrets():
    env = compose()["services"]["airflow-scheduler"]["environment"]
    catalogue = load_catalogue(REPO / "include" / "drills.yaml")
    assert f"AIRFLOW_CONN_{catalogue.defaults.ledger_connection.upper()}" in env
    for key, value in env.items():
        if key.startswith("AIRFLOW_CONN_") and "@" in str(value):
            password = str(value).split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
            assert password.startswith("${"), f"{key} carries a literal password"


def test_init_creates_the_ledger_and_validates_the_catalogue():
    command = "\n".join(compose()["services"]["airflow-init"]["command"])
    assert "drillbook validate" in command and "drillbook ledger init" in command
