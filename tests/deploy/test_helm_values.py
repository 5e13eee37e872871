"""deploy/helm/*.yaml: values for the official Airflow Helm chart, checked without helm (not installable here).

`helm` is not in Debian's archive and nothing may be downloaded from outside the
package registries, so these values are not rendered. They are checked instead:
each is YAML, every key path is one the chart documents (transcribed below from
the chart's values.schema.json), the image is the Dockerfile's, the Airflow
version is the locked one, and the connections are exactly the compose file's,
all from Kubernetes Secrets.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HELM = REPO / "deploy" / "helm"

# Key paths of the chart's values (apache/airflow chart/values.schema.json) that these files use.
# A path ending in ".*" takes free-form content (a Kubernetes object, or airflow.cfg sections).
DOCUMENTED = {
    "executor",
    "airflowVersion",
    "defaultAirflowTag",
    "images.airflow.repository",
    "images.airflow.tag",
    "images.airflow.pullPolicy",
    "data.metadataSecretName",
    "fernetKeySecretName",
    "postgresql.enabled",
    "redis.enabled",
    "env",
    "secret",
    "config.*",
    "dagProcessor.enabled",
    "triggerer.enabled",
    "dags.persistence.enabled",
    "dags.gitSync.enabled",
    "workers.replicas",
    "workers.resources.*",
    "workers.persistence.enabled",
}


def key_paths(node: object, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return [prefix]
    out = []
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if any(doc.endswith(".*") and path.startswith(doc[:-1]) for doc in DOCUMENTED) or path in DOCUMENTED:
            out.append(path)
            continue
        out += key_paths(value, path) if isinstance(value, dict) else [path]
    return out


def values(name: str) -> dict:
    return yaml.safe_load((HELM / name).read_text())


def merged(variant: str) -> dict:
    """helm's merge of -f values-common.yaml -f <variant> (maps merged deeply, the later file wins)."""

    def merge(a: dict, b: dict) -> dict:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    return merge(values("values-common.yaml"), values(variant))


@pytest.mark.parametrize("name", ["values-common.yaml", "values-celery.yaml", "values-kubernetes.yaml"])
def test_every_key_is_one_the_chart_documents(name):
    unknown = [
        p
        for p in key_paths(values(name))
        if p not in DOCUMENTED and not any(d.endswith(".*") and p.startswith(d[:-1]) for d in DOCUMENTED)
    ]
    assert unknown == [], f"{name}: keys the chart does not document: {unknown}"


def test_a_misspelt_key_is_caught():
    assert key_paths({"workers": {"replica": 2}}) == ["workers.replica"]
    assert "workers.replica" not in DOCUMENTED


@pytest.mark.parametrize(
    "variant,executor",
    [("values-celery.yaml", "CeleryExecutor"), ("values-kubernetes.yaml", "KubernetesExecutor")],
)
def test_both_variants_use_the_same_image_the_locked_airflow_and_the_compose_connections(variant, executor):
    doc = merged(variant)
    assert doc["executor"] == executor
    assert doc["redis"]["enabled"] is (executor == "CeleryExecutor")
    lock = (REPO / "uv.lock").read_text()
    airflow = re.search(r'name = "apache-airflow"\nversion = "([^"]+)"', lock).group(1)
    assert doc["airflowVersion"] == airflow == doc["defaultAirflowTag"]
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    conns = {
        k for k in compose["services"]["airflow-scheduler"]["environment"] if k.startswith("AIRFLOW_CONN_")
    }
    from_secrets = {s["envName"] for s in doc["secret"]}
    assert conns <= from_secrets, f"connections missing from the chart values: {sorted(conns - from_secrets)}"
    assert "AIRFLOW__API_AUTH__JWT_SECRET" in from_secrets
    literal = [
        e["name"]
        for e in doc["env"]
        if e["name"].startswith("AIRFLOW_CONN_") or "SECRET" in e["name"] or "PASSWORD" in e["name"]
    ]
    assert literal == [], f"secrets must come from Kubernetes Secrets, not env: {literal}"
