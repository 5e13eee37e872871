"""``drillbook validate`` / ``watchdog`` / ``digest`` import neither GX nor Airflow; GX suite checks run only on request.

The answer must not depend on what a process happens to have imported: a misspelt
expectation passes the structural check with or without GX in ``sys.modules``, the
output says the GX part did not run, and ``--suites`` (or ``gx_suites=True``) catches it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.data_quality.conftest import REPO
from tests.data_quality.test_catalogue import write

HEAVY = ("great_expectations", "airflow", "pandas")


def _misspell(data):
    data["expectations"][2]["type"] = "expect_column_values_to_not_be_nul"


def _run(code: str, *, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DRILLBOOK_SUITE_CHECK"}
    env.update({"PYTHONPATH": str(REPO / "plugins"), **(env_extra or {})})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env=env,
    )


@pytest.mark.parametrize("command", ["validate", "watchdog", "digest"])
def test_light_commands_import_no_gx_and_no_airflow(command, ledger_dsn, tmp_path):
    argv = [command] if command == "validate" else [command, "--ledger-dsn", ledger_dsn]
    proc = _run(
        f"""
        import json, sys
        from drillbook.cli import main
        try:
            code = main({argv!r})
        except SystemExit as exc:
            code = exc.code
        print(json.dumps({{"code": code, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
    """,
        env_extra={"DRILLBOOK_OUTBOX": str(tmp_path / "outbox.jsonl"), "AIRFLOW_CONN_DRILLBOOK_SLACK": ""},
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] in (0, 1, None), (
        proc.stdout[-2000:] + proc.stderr[-2000:]
    )  # 1: the watchdog found stale drills
    assert "Traceback" not in proc.stderr
    assert report["heavy"] == [], f"drillbook {command} imported {report['heavy']}"


def test_the_import_check_sees_gx(tmp_path):
    """The check above can fail: with --suites, validate does import GX."""
    proc = _run("""
        import json, sys
        from drillbook.cli import main
        code = main(["validate", "--suites"])
        print(json.dumps({"code": code, "gx": "great_expectations" in sys.modules}))
    """)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"code": 0, "gx": True}, proc.stderr[-2000:]


def test_validate_says_gx_checks_did_not_run_and_the_flag_runs_them(tmp_path):
    path = write(tmp_path, edit=_misspell)
    plain = subprocess.run(
        [sys.executable, "-m", "drillbook", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "plugins"), "DRILLBOOK_SUITE_CHECK": ""},
    )
    assert plain.returncode == 0, plain.stderr
    assert "Great Expectations suite checks were NOT run" in plain.stdout
    assert "drillbook validate --suites" in plain.stdout

    full = subprocess.run(
        [sys.executable, "-m", "drillbook", "validate", "--suites", str(path)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "plugins"), "DRILLBOOK_SUITE_CHECK": ""},
    )
    assert full.returncode == 2, full.stdout + full.stderr
    assert "unknown expectation type 'expect_column_values_to_not_be_nul'" in full.stderr
    assert "Traceback" not in full.stderr


def test_healthy_suites_pass_with_the_flag(tmp_path):
    path = write(tmp_path)
    full = subprocess.run(
        [sys.executable, "-m", "drillbook", "validate", "--suites", str(path)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "plugins")},
    )
    assert full.returncode == 0, full.stdout + full.stderr
    assert "every expectation was built with Great Expectations" in full.stdout


def test_the_answer_does_not_change_with_sys_modules(tmp_path):
    """GX already imported (as in a worker) must not turn a structural check into a GX one behind the user's back."""
    path = write(tmp_path, edit=_misspell)
    proc = _run(f"""
        import json
        from drillbook.catalogue import load_catalogue
        before = load_catalogue({str(path)!r}).gx_suites_checked
        import airflow, great_expectations  # noqa: F401
        after = load_catalogue({str(path)!r}).gx_suites_checked
        print(json.dumps([before, after]))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [False, False]
