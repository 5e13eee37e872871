"""The image: Dockerfile, compose file and lock agree, checked without Docker (it does not run here).

- the compose file validates against the Compose Specification's JSON schema
  (vendored from check-jsonschema 0.39.0's builtin schemas, Apache-2.0: see
  LICENSE.compose-spec beside it);
- the Dockerfile parses, every COPY source exists, it extends the official
  image at the Airflow version uv.lock pins, and its ``uv export`` step, run
  here, yields hash-pinned requirements that resolve offline to exactly what
  the tests run with (celery 5.6.x and the Celery provider included);
- the CeleryExecutor imports from the installed provider.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
UV = next((p for p in (REPO / ".tools" / "bin" / "uv",) if p.exists()), None)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        buf += " " + stripped[:-1] if stripped.endswith("\\") else " " + stripped
        if not stripped.endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    assert not buf, f"Dockerfile ends inside a continued line: {buf[:80]!r}"
    return out


def instructions() -> list[tuple[str, str]]:
    return dockerfile_instructions((REPO / "Dockerfile").read_text())


def locked_version(name: str) -> str:
    text = (REPO / "uv.lock").read_text()
    m = re.search(rf'\[\[package\]\]\nname = "{re.escape(name)}"\nversion = "([^"]+)"', text)
    assert m, f"{name} is not in uv.lock"
    return m.group(1)


def test_compose_file_validates_against_the_compose_specification():
    schema = json.loads((HERE / "compose-spec.schema.json").read_text())
    document = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    jsonschema.validate(document, schema)
    broken = {
        **document,
        "services": {
            **document["services"],
            "redis": {**document["services"]["redis"], "restart_policy": "always"},
        },
    }
    with pytest.raises(jsonschema.ValidationError):  # the schema is strict enough to catch a misspelt key
        jsonschema.validate(broken, schema)


def test_dockerfile_parses_and_every_copy_source_exists():
    steps = instructions()
    known = {"FROM", "ARG", "USER", "RUN", "COPY", "WORKDIR", "ENV", "LABEL"}
    assert {word for word, _ in steps} <= known, {word for word, _ in steps} - known
    copies = [args for word, args in steps if word == "COPY"]
    assert copies
    for args in copies:
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        for source in parts[:-1]:
            assert (REPO / source).exists(), f"Dockerfile COPY source {source!r} does not exist"


def test_image_extends_the_official_image_at_the_locked_airflow_version():
    steps = instructions()
    args = {}
    for word, rest in steps:
        if word == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            args[key] = value.strip('"')
    base = next(rest for word, rest in steps if word == "FROM")
    base = base.replace("${AIRFLOW_VERSION}", args["AIRFLOW_VERSION"])
    assert base == f"apache/airflow:{locked_version('apache-airflow')}-python3.11"
    assert args["UV_VERSION"], "pin uv in the image"
    assert set(args["PG_MAJORS"].split()) >= {"13", "14", "15", "16", "17"}
    users = [rest for word, rest in steps if word in ("USER", "RUN")]
    pip_at = next(i for i, r in enumerate(users) if "pip install" in r)
    assert [u for u in users[:pip_at] if not u.startswith(("set", "apt"))][-1] == "airflow", (
        "pip must run as the airflow user"
    )
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in (REPO / "Dockerfile").read_text()


@pytest.mark.skipif(UV is None, reason="uv is bootstrapped into .tools by `make install`")
def test_the_dockerfiles_uv_export_resolves_offline_to_what_the_tests_run_with(tmp_path):
    run = next(rest for word, rest in instructions() if word == "RUN" and "uv export" in rest)
    export = next(part.strip() for part in run.split(";") if "uv export" in part)
    command, _, target = export.partition(">")
    assert target.strip() == "/tmp/requirements.txt"
    out = subprocess.run(
        [str(UV), *shlex.split(command)[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(out)
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^ \\\n;]+)", out, re.M))
    assert pins["apache-airflow"] == locked_version("apache-airflow")
    assert pins["apache-airflow-providers-celery"] == locked_version("apache-airflow-providers-celery")
    assert pins["celery"].startswith("5.6."), (
        "celery 5.7.0 kills scheduler and worker; the lock must keep 5.6.x"
    )
    assert "drillbook" not in pins, "drillbook itself is installed from the copied source, not the index"
    assert out.count("--hash=sha256:") >= len(pins), "every requirement hash-pinned (pip --require-hashes)"
    # against the environment `make install` synced from the same lock: resolves offline, changes nothing
    dry = subprocess.run(
        [
            str(UV),
            "pip",
            "install",
            "--dry-run",
            "--offline",
            "--require-hashes",
            "-r",
            str(requirements),
            "--python",
            sys.executable,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "Would make no changes" in dry.stderr + dry.stdout


def test_the_celery_executor_imports_with_celery_below_5_7():
    import celery
    from airflow.providers.celery.executors.celery_executor import CeleryExecutor

    assert CeleryExecutor.__name__ == "CeleryExecutor"
    major, minor = (int(x) for x in celery.__version__.split(".")[:2])
    assert (major, minor) < (5, 7), celery.__version__
