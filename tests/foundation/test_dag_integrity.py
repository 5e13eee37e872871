"""DAG integrity: every DAG in dags/ imports, follows the policy, and parses fast.

A broken catalogue must surface as one import error that names file, line and key.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXPECTED_DRILL_DAGS = {
    "dr_backup_restore__shop_nightly",
    "dr_data_quality__shop_orders_quality",
    "dr_certificates__demo_certificates",
    "dr_alert_path__oncall_paths",
}
PARSE_BUDGET_SECONDS = 2.0  # per DAG file once Airflow itself is imported (the parse timeout is 30 s)


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    start = time.monotonic()
    bag = DagBag(dag_folder=str(REPO / "dags"))
    bag.parse_seconds = time.monotonic() - start  # type: ignore[attr-defined]
    return bag


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_every_catalogue_drill_has_its_dag_and_the_watchdog_exists(dagbag):
    ids = set(dagbag.dag_ids)
    assert EXPECTED_DRILL_DAGS <= ids
    assert "dr_watchdog" in ids
    assert any(i.startswith("dr_digest") for i in ids)


def test_policy(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag_id.startswith("dr_"), dag_id
        assert "drillbook" in dag.tags, dag_id
        assert dag.catchup is False, dag_id
        assert dag.max_active_runs == 1, dag_id
        assert dag.doc_md and len(dag.doc_md) > 40, dag_id
        assert dag.default_args.get("owner"), dag_id
        assert dag.default_args.get("retries") is not None, dag_id
        assert dag.on_failure_callback, dag_id
        if dag_id.startswith("dr_") and "__" in dag_id:
            kind = dag_id[3:].split("__")[0]
            assert kind in dag.tags, dag_id


def test_every_task_declares_its_xcom_shape(dagbag):
    """One XCom per task: tasks are ``PythonOperator``s (``factory.drill_task``), and the ``@task`` left declares
    ``multiple_outputs=False``; otherwise Airflow evaluates its return annotation at parse time (``get_type_hints``,
    ~10% of a 1,000-drill parse) and splits a dict result into one XCom per key that nothing reads.
    """
    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            assert getattr(task, "multiple_outputs", False) is False, (dag_id, task.task_id)


def test_parse_time(dagbag):
    slow = {
        s.file: s.duration for s in dagbag.dagbag_stats if s.duration.total_seconds() > PARSE_BUDGET_SECONDS
    }
    assert slow == {}


def test_dag_files_stay_thin():
    for path in (REPO / "dags").glob("*.py"):
        code = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        assert len(code) <= 12, f"{path.name} has logic in it; DAG files are a few lines (see DESIGN.md)"
        text = path.read_text()
        for heavy in ("great_expectations", "boto3", "psycopg", "slack_sdk", "pandas"):
            assert heavy not in text, f"{path.name} imports {heavy} at top level"


@pytest.mark.parametrize("dag_file", ["dr_drills.py", "dr_watchdog.py"])
def test_broken_catalogue_is_one_clear_import_error(tmp_path, monkeypatch, dag_file):
    from airflow.dag_processing.dagbag import DagBag

    broken = tmp_path / "drills.yaml"
    broken.write_text(
        'version: 1\ndrills:\n  - name: shop\n    kind: backup_restore\n    schedule: "0 3 * * *"\n'
        "    backup: {location: /srv/backups}\n    scratch: {connection: drillbook_scratch}\n"
        "    objectives: {rto: 15m, rpo: 26h}\n    verfy: {}\n"
    )
    monkeypatch.setenv("DRILLBOOK_CATALOGUE", str(broken))
    bag = DagBag(dag_folder=str(REPO / "dags" / dag_file))
    [error] = bag.import_errors.values()
    assert f"{broken}:9: drills[0].verfy: unknown key" in error


# -- dr_watchdog.py is built from the catalogue's summary (issue 14), with the same DAGs and the same errors -------
@pytest.fixture
def own_catalogue(tmp_path, monkeypatch):
    """The shipped catalogue with its references and suites in a directory of its own, a private cache."""
    from drillbook.catalogue import compiled

    home = tmp_path / "include"
    shutil.copytree(REPO / "include", home)
    monkeypatch.setenv("DRILLBOOK_CATALOGUE", str(home / "drills.yaml"))
    monkeypatch.setenv("DRILLBOOK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DRILLBOOK_SUITE_CHECK", raising=False)
    compiled._MEMO.clear()
    return home / "drills.yaml"


def _load(path):
    from drillbook.catalogue import compiled

    catalogue = compiled.load_compiled_catalogue(path, cache_root=os.environ["DRILLBOOK_CACHE_DIR"])
    compiled._MEMO.clear()  # as in the next parse process
    return catalogue


def _shape(dag):
    return (
        dag.dag_id,
        str(dag.schedule),
        dag.description,
        dag.start_date,
        dag.catchup,
        dag.max_active_runs,
        sorted(dag.tags),
        dag.doc_md,
        dag.default_args,
        dag.on_failure_callback,
        [(t.task_id, sorted(t.downstream_task_ids), t.owner, t.retries, t.retry_delay) for t in dag.tasks],
    )


def test_the_watchdog_dags_from_the_summary_are_those_from_the_catalogue(own_catalogue):
    from drillbook.airflow import watchdog
    from drillbook.airflow.current_catalogue import current_summary
    from drillbook.catalogue.summary import CatalogueSummary

    full = _load(own_catalogue)
    summary = current_summary()
    assert isinstance(summary, CatalogueSummary)  # the file's parse takes this path
    from_full = {k: _shape(d) for k, d in watchdog.build_watchdog_dags(full).items()}
    from_summary = {k: _shape(d) for k, d in watchdog.build_watchdog_dags().items()}
    assert from_summary == from_full
    assert set(from_full) == {"dr_watchdog", "dr_digest__daily", "dr_digest__weekly"}
    assert (
        watchdog._loaded(summary).model_dump() == full.model_dump()
    )  # a task works with the catalogue itself


def test_the_watchdog_file_reports_a_reference_gone_since_the_last_load(own_catalogue):
    from airflow.dag_processing.dagbag import DagBag

    _load(own_catalogue)  # the summary now stands for this file and its references
    (own_catalogue.parent / "references" / "shop.json").unlink()
    bag = DagBag(dag_folder=str(REPO / "dags" / "dr_watchdog.py"))
    [error] = bag.import_errors.values()
    assert "references/shop.json" in error and "does not exist" in error
    assert f"{own_catalogue}:" in error


def test_the_watchdog_file_parses_without_the_catalogue_models(own_catalogue):
    """What makes that file cheap: with a summary standing for the catalogue, its parse process never imports the
    catalogue's (and every kind's) pydantic models, nor validates a drill."""
    _load(own_catalogue)
    code = (
        "import runpy, sys\n"
        f"found = runpy.run_path({str(REPO / 'dags' / 'dr_watchdog.py')!r})\n"
        "print(sorted(k for k in found if k.startswith('dr_')))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('drillbook.catalogue.models', 'drillbook.drills.'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "plugins")},
        timeout=300,
    ).stdout.splitlines()
    assert out[0] == "['dr_digest__daily', 'dr_digest__weekly', 'dr_watchdog']"
    assert out[1] == "[]"  # nor the kind registry (no plug-in kind can have been registered without it)
