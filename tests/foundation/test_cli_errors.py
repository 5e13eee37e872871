"""No secret in any output, no traceback for bad input, and exit codes that tell a crash from a broken chain.

Commands run as subprocesses, as a user runs them, so that whatever reaches
stdout or stderr (tracebacks included) is seen; files the run writes (outbox,
crash reports, work directories) are searched for the canary too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drillbook.cli.exits import ExitCode

REPO = Path(__file__).resolve().parents[2]
CANARY = "S3cr3tCanary"
MALFORMED = f"postgresql://drill:{CANARY}%@127.0.0.1:1/db"  # '%' not followed by two hex digits


def run(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    base = {
        "PYTHONPATH": str(REPO / "plugins"),
        "PATH": "/usr/bin:/bin",
        "TMPDIR": str(tmp),
        "HOME": str(tmp_path),
        "DRILLBOOK_OUTBOX": str(tmp_path / "outbox.jsonl"),
        "XDG_RUNTIME_DIR": str(tmp),
    }
    return subprocess.run(
        [sys.executable, "-m", "drillbook", *argv],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=300,
    )


def assert_no_canary(proc: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    assert CANARY not in proc.stdout and CANARY not in proc.stderr, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix != ".dump":
            assert CANARY.encode() not in path.read_bytes(), path


@pytest.fixture(scope="module")
def small_dump(pg, tmp_path_factory) -> Path:
    from drillbook.resources.pg import tool_env

    name = pg.create_database("canary")
    pg.execute(name, "create table t (id int primary key); insert into t select generate_series(1, 10)")
    out = tmp_path_factory.mktemp("canary") / "small.dump"
    subprocess.run(
        [str(Path(pg.bin_dir) / "pg_dump"), "-Fc", "-f", str(out)],
        env=tool_env(pg.dsn(name)),
        check=True,
        capture_output=True,
        timeout=120,
    )
    pg.drop_database(name)
    return out


# -- evidence verify -------------------------------------------------------------------------------
def test_verify_with_a_malformed_dsn_flag_exits_2_without_the_password(tmp_path):
    proc = run(tmp_path, "evidence", "verify", "--ledger-dsn", MALFORMED)
    assert proc.returncode == ExitCode.ERROR == 2
    assert proc.stderr.startswith("drillbook: error: malformed PostgreSQL DSN: invalid percent-encoded token")
    assert_no_canary(proc, tmp_path)


def test_verify_with_a_malformed_dsn_in_the_environment_exits_2(tmp_path):
    proc = run(tmp_path, "evidence", "verify", env={"DRILLBOOK_LEDGER_DSN": MALFORMED})
    assert proc.returncode == 2
    assert_no_canary(proc, tmp_path)


def test_verify_against_an_unreachable_ledger_is_not_a_broken_chain(tmp_path):
    proc = run(
        tmp_path,
        "evidence",
        "verify",
        env={"DRILLBOOK_LEDGER_DSN": f"postgresql://drill:{CANARY}@127.0.0.1:1/db"},
    )
    assert proc.returncode == 2 != ExitCode.FAIL
    assert "BROKEN" not in proc.stdout
    assert_no_canary(proc, tmp_path)


def test_verify_of_an_intact_ledger_exits_0(tmp_path, ledger_dsn):
    proc = run(tmp_path, "evidence", "verify", env={"DRILLBOOK_LEDGER_DSN": ledger_dsn})
    assert proc.returncode == 0, proc.stderr
    # verify prints what it compared (checkpoint, guards) first and its verdict last (tests/ledger/test_tamper.py)
    assert proc.stdout.strip().splitlines()[-1].startswith("ledger OK: 0 records, chain intact")


# -- run backup-restore ----------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["scratch flag", "scratch env", "source flag"])
def test_run_backup_restore_with_a_malformed_dsn_exits_2_without_the_password(
    tmp_path, pg, small_dump, where
):
    argv = ["run", "backup-restore", "--backup", str(small_dump)]
    env: dict[str, str] = {}
    if where == "scratch flag":
        argv += ["--scratch-dsn", MALFORMED]
    elif where == "scratch env":
        env["DRILLBOOK_SCRATCH_DSN"] = MALFORMED
    else:
        argv += ["--scratch-dsn", pg.admin_dsn, "--source-dsn", MALFORMED]
    proc = run(tmp_path, *argv, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "malformed PostgreSQL DSN" in proc.stderr
    assert_no_canary(proc, tmp_path)


def test_a_drill_that_ran_but_whose_ledger_dsn_is_malformed(tmp_path, pg, small_dump):
    # the drill itself runs and passes; reading the trend and recording fail on the ledger DSN
    proc = run(
        tmp_path,
        "run",
        "backup-restore",
        "--backup",
        str(small_dump),
        "--scratch-dsn",
        pg.admin_dsn,
        "--no-notify",
        env={"DRILLBOOK_LEDGER_DSN": MALFORMED},
    )
    assert "verdict: PASS" in proc.stdout
    assert proc.returncode == 2  # the evidence was not recorded: not a clean PASS
    assert "could not be recorded" in proc.stderr
    assert_no_canary(proc, tmp_path)


def test_healthy_drill_still_exits_0(tmp_path, pg, small_dump):
    proc = run(
        tmp_path,
        "run",
        "backup-restore",
        "--backup",
        str(small_dump),
        "--scratch-dsn",
        pg.admin_dsn,
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert '"verdict": "PASS"' in proc.stdout


# -- internal errors and the exit-code scheme -------------------------------------------------------
INTERNAL = """\
import os, sys
from drillbook.cli import exits
from drillbook.settings import load_settings
exits.register_secrets([], os.environ)
try:
    raise RuntimeError("lost connection, password was " + os.environ["PGPASSWORD"])
except RuntimeError as exc:
    sys.exit(exits.handle(exc, debug=load_settings().debug))  # as cli.main does: settings read at the entry
"""


@pytest.mark.parametrize("debug", [False, True])
def test_an_internal_error_is_one_redacted_line_exit_4_and_a_redacted_traceback(tmp_path, debug):
    env = {
        "PYTHONPATH": str(REPO / "plugins"),
        "PATH": "/usr/bin:/bin",
        "TMPDIR": str(tmp_path),
        "PGPASSWORD": CANARY,
    }
    if debug:
        env["DRILLBOOK_DEBUG"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", INTERNAL], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == ExitCode.INTERNAL == 4
    lines = proc.stderr.splitlines()
    assert lines[0] == "drillbook: internal error: RuntimeError: lost connection, password was ***"
    [crash] = list(tmp_path.glob("drillbook-crash-*.txt"))
    trace = crash.read_text()
    assert (
        "Traceback (most recent call last)" in trace and "password was ***" in trace and CANARY not in trace
    )
    assert oct(crash.stat().st_mode & 0o777) == "0o600"
    if debug:
        assert "Traceback (most recent call last)" in proc.stderr and CANARY not in proc.stderr
    else:
        assert lines[1:] == [f"  the full traceback (redacted) is in {crash}; DRILLBOOK_DEBUG=1 prints it"]


def test_help_documents_the_exit_codes(tmp_path):
    proc = run(tmp_path, "--help")
    assert proc.returncode == 0
    for code, word in [(0, "PASS"), (1, "FAIL"), (2, "ERROR"), (3, "SKIPPED"), (4, "internal error")]:
        assert f"  {code}  {word}" in proc.stdout


def test_usage_errors_and_bad_catalogues_exit_2_without_a_traceback(tmp_path):
    assert run(tmp_path, "run", "nosuchkind").returncode == 2
    bad = tmp_path / "drills.yaml"
    bad.write_bytes(b"version: 1\ndrills: [\n")
    proc = run(tmp_path, "run", "certificates", "--catalogue", str(bad), "--drill", "x")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{bad}:3: (yaml):" in proc.stderr


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (
            "AIRFLOW_CONN_DRILLBOOK_SCRATCH",
            '{"conn_type": "postgres", "host": "h", "password": "S3cr3tCanary\\"q"}',
        ),
        (
            "AIRFLOW_CONN_DRILLBOOK_SLACK",
            '{"conn_type": "slack", "extra": {"webhook_token": "S3cr3tCanary-tok"}}',
        ),
        ("DRILLBOOK_CONN_DRILLBOOK_SOURCE", "host=h port=5432 password='S3cr3tCanary x' dbname=shop"),
        ("DRILLBOOK_SCRATCH_DSN", "postgresql://u:S3cr3tCanary%zz@h/db"),
    ],
)
def test_secrets_in_the_environment_are_registered_before_any_command(key, value):
    script = (
        "import os, json; from drillbook.cli import exits; from drillbook.safety.redact import redact; "
        "exits.register_secrets([], os.environ); v = os.environ['V']; "
        "print(redact('x ' + json.loads(v)['password'] if v.startswith('{') and 'password' in v else 'x ' + v))"
    )
    env = {"PYTHONPATH": str(REPO / "plugins"), "PATH": "/usr/bin:/bin", key: value, "V": value}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert CANARY not in proc.stdout and "***" in proc.stdout
