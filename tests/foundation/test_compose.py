"""docker-compose.yaml is parsed here (Docker does not run here); tests/deploy runs its services natively."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from drillbook.catalogue import load_catalogue
from tests.deploy.composefile import environment, interpolate_tree, read_dotenv, required_variables

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def test_services_of_airflow_3_and_drillbook():
    services = compose()["services"]
    assert {
        "postgres",
        "redis",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-worker",
        "airflow-triggerer",
        "airflow-init",
        "drillbook-db",
    } <= set(services)


def test_every_airflow_service_builds_the_image_mounts_include_and_shares_one_jwt_secret():
    services = compose()["services"]
    airflow = {n: s for n, s in services.items() if n.startswith("airflow-")}
    for name, svc in airflow.items():
        assert svc["build"] == ".", name
        mounts = [v.removesuffix(":ro").rsplit(":", 1)[1] for v in svc["volumes"]]
        assert {"/opt/airflow/include", "/opt/airflow/plugins", "/opt/airflow/var"} <= set(mounts), name
        env = svc["environment"]
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in env, (
            f"{name}: dependencies come from the image, not container start"
        )
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${AIRFLOW_JWT_SECRET"), name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"


def test_every_connection_the_catalogue_names_is_defined_and_every_secret_comes_from_env():
    catalogue = load_catalogue(REPO / "include" / "drills.yaml")
    raw = compose()["services"]["airflow-scheduler"]["environment"]
    named = {catalogue.defaults.ledger_connection, catalogue.defaults.slack.connection}
    text = (REPO / "include" / "drills.yaml").read_text()
    named |= {
        line.split("connection:", 1)[1].strip().strip("}").split(",")[0].strip()
        for line in text.splitlines()
        if "connection:" in line and not line.lstrip().startswith("#")
    }
    for conn_id in named:
        assert f"AIRFLOW_CONN_{conn_id.upper()}" in raw, (
            f"{conn_id} is named by the catalogue but not defined"
        )
    sentinel = {
        name: f"SENTINEL-{name}" for name in required_variables((REPO / "docker-compose.yaml").read_text())
    }
    env = environment({"environment": interpolate_tree(raw, sentinel)})
    for key, value in env.items():
        if key.startswith("AIRFLOW_CONN_") and "://" in value:
            password = urlsplit(value).password
            assert password is None or password.startswith("SENTINEL-"), f"{key} carries a literal password"
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
        assert urlsplit(env[key]).password == "SENTINEL-AIRFLOW_DB_PASSWORD", key


def test_env_example_defines_every_required_variable_and_env_is_never_committed():
    required = required_variables((REPO / "docker-compose.yaml").read_text())
    example = read_dotenv(REPO / ".env.example")
    assert required <= set(example), f"missing from .env.example: {sorted(required - set(example))}"
    for key in ("AIRFLOW_CONN_DRILLBOOK_SLACK", "AIRFLOW_CONN_DRILLBOOK_DEMO_WEBHOOK"):
        json.loads(example[key])  # JSON connections survive .env quoting
    assert ".env" in (REPO / ".gitignore").read_text().split()


def test_init_migrates_validates_the_catalogue_and_creates_the_ledger():
    command = "\n".join(compose()["services"]["airflow-init"]["command"])
    assert "airflow db migrate" in command
    assert "drillbook validate" in command and "drillbook ledger init" in command
