"""One settings model: only ``drillbook.settings`` reads the environment, nothing at import time, typos refused."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drillbook.errors import ConfigurationError
from drillbook.settings import Settings, field_env_names, load_settings

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "plugins" / "drillbook"

#: Modules that touch os.environ for something that is not a drillbook setting, and why. Nothing else may.
NOT_SETTINGS = {
    "settings.py": "the settings model itself",
    "cli/__init__.py": "the CLI entry point registers secret-looking environment values with redact",
    "resources/pg.py": "libpq's own PGHOST/PGPORT defaults, and the environment handed to pg_dump/psql",
    "resources/connections.py": "the resolver's environment backend (AIRFLOW_CONN_<ID>, DRILLBOOK_CONN_<ID>)",
    "drills/backup_restore/tools.py": "PATH, where client tools are looked up (as shutil.which does)",
    "drills/backup_restore/verify/reference_cluster.py": "the environment handed to pg_restore",
    "drills/certificates/verify.py": "OpenSSL's own SSL_CERT_FILE / SSL_CERT_DIR",
    "drills/data_quality/engine.py": "libpq's own PGHOST default",
    "drills/data_quality/suites.py": "GX_ANALYTICS_ENABLED=false before GX is imported",
    "catalogue/cache_files.py": "XDG_CACHE_HOME, the user's cache base",
    "drills/backup_restore/dag.py": "PGBACKREST_* / BARMAN_* handed to the physical tools",
    "drills/backup_restore/physical/pgbackrest.py": "HOME handed to pgBackRest",
}


def _environ_uses(tree: ast.AST) -> list[ast.AST]:
    uses: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb", "putenv"):
            uses.append(node)
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(a.name in ("environ", "getenv") for a in node.names)
        ):
            uses.append(node)
    return uses


def _modules() -> list[tuple[str, ast.Module]]:
    return [
        (str(p.relative_to(PACKAGE)), ast.parse(p.read_text(), str(p))) for p in sorted(PACKAGE.rglob("*.py"))
    ]


def test_only_the_settings_module_reads_the_environment():
    offenders = [
        f"{name}:{use.lineno}"
        for name, tree in _modules()
        if name not in NOT_SETTINGS
        for use in _environ_uses(tree)
    ]
    assert not offenders, (
        f"environment read outside drillbook.settings (pass Settings down instead): {offenders}"
    )


def test_no_module_reads_the_environment_at_import_time():
    offenders = []
    for name, tree in _modules():
        for stmt in tree.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            offenders += [f"{name}:{use.lineno}" for use in _environ_uses(stmt)]
    assert not offenders, f"module-level environment read (frozen at import): {offenders}"


def test_the_allow_list_names_real_users():
    # an entry whose module no longer reads the environment must go: the list stays the truth
    users = {name for name, tree in _modules() if _environ_uses(tree)}
    assert set(NOT_SETTINGS) == users


#: The entry points: the only modules that may call (or import) ``load_settings``; everything below them
#: receives the settings, or the one value it needs, as a parameter (issue 12). Paths relative to the repo.
ENTRY_POINTS = {
    "plugins/drillbook/cli/__init__.py": "the CLI's main: reads the settings once into args.settings",
    "plugins/drillbook/cli/config.py": "settings_of: a command function called on its own is its own entry point",
    "plugins/drillbook/airflow/resources.py": "a task's resolver: the Airflow entry point's settings",
    "plugins/drillbook/airflow/current_catalogue.py": "the catalogue of an Airflow process (DAG files, tasks, callbacks)",
    "plugins/drillbook/airflow/evidence_plugin.py": "the Airflow plugin that serves the evidence app",
    "plugins/drillbook/drills/backup_restore/dag.py": "the backup-restore task bodies",
    "scripts/demo.py": "the demo script",
    "scripts/demo_up.py": "the `make up` script",
}


def _load_settings_uses(tree: ast.AST) -> list[int]:
    """Lines that call or import ``load_settings`` (by name, as an attribute, or under an alias)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Name) and func.id == "load_settings") or (
                isinstance(func, ast.Attribute) and func.attr == "load_settings"
            ):
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and any(a.name == "load_settings" for a in node.names):
            lines.append(node.lineno)
    return sorted(set(lines))


def _entry_point_sources() -> list[Path]:
    return sorted([*PACKAGE.rglob("*.py"), *(REPO / "scripts").rglob("*.py")])


def test_load_settings_is_called_only_from_the_entry_points():
    offenders = [
        f"{path.relative_to(REPO)}:{line}"
        for path in _entry_point_sources()
        if str(path.relative_to(REPO)) not in ENTRY_POINTS
        for line in _load_settings_uses(ast.parse(path.read_text(), str(path)))
    ]
    assert not offenders, (
        "load_settings() below the entry points (take the value as a keyword parameter from the "
        f"caller instead, or add a real entry point to ENTRY_POINTS): {offenders}"
    )


def test_the_entry_point_check_sees_every_spelling_of_the_call():
    # the check can fail: a library module with each spelling of the fallback this issue removed is caught, by line
    src = (
        "from drillbook.settings import load_settings\n"
        "import drillbook.settings as s\n"
        "from drillbook.settings import load_settings as ls\n"
        "def spool_path(path=None):\n"
        "    return path or load_settings().spool_file\n"
        "def outbox():\n"
        "    return s.load_settings().outbox\n"
    )
    assert _load_settings_uses(ast.parse(src)) == [1, 3, 5, 7]
    assert _load_settings_uses(ast.parse("def f(settings):\n    return settings.spool_file\n")) == []


def test_the_entry_point_list_names_real_callers():
    # an entry point that no longer reads the settings leaves the list: the list stays the truth
    callers = {
        str(p.relative_to(REPO))
        for p in _entry_point_sources()
        if _load_settings_uses(ast.parse(p.read_text()))
    }
    assert callers == set(ENTRY_POINTS)


def test_a_misspelt_variable_is_an_error_naming_it_and_the_right_name():
    with pytest.raises(ConfigurationError) as err:
        load_settings({"DRILLBOOK_SPOL": "/tmp/spool.jsonl"})
    assert "DRILLBOOK_SPOL" in str(err.value) and "did you mean DRILLBOOK_SPOOL?" in str(err.value)


def test_connections_and_test_knobs_are_not_settings_and_not_errors():
    settings = load_settings(
        {
            "DRILLBOOK_CONN_DRILLBOOK_SLACK": "{}",
            "DRILLBOOK_TEST_PG_DSN": "x",
            "DRILLBOOK_BENCH_DSN": "x",
            "DRILLBOOK_E2E_STACK": "m",
            "PATH": "/bin",
        }
    )
    assert settings == Settings.model_validate({})


def test_every_field_is_read_from_its_variable():
    settings = load_settings(
        {
            "DRILLBOOK_TOC_TIMEOUT": "7",
            "DRILLBOOK_SPOOL": "/x/s.jsonl",
            "DRILLBOOK_DEBUG": "1",
            "drillbook_suite_check": "fast",
        }
    )
    assert (settings.toc_timeout, settings.spool_file, settings.debug, settings.suite_check) == (
        7,
        Path("/x/s.jsonl"),
        True,
        "fast",
    )
    assert load_settings({"DRILLBOOK_DEBUG": "0"}).debug is False  # the historical rule: "" and "0" are off
    assert set(field_env_names()) == {"DRILLBOOK_" + f.upper() for f in Settings.model_fields}


def test_a_bad_value_names_the_variable_and_what_was_found_but_never_a_secret():
    with pytest.raises(ConfigurationError) as err:
        load_settings({"DRILLBOOK_TOC_TIMEOUT": "ten"})
    assert "DRILLBOOK_TOC_TIMEOUT" in str(err.value) and "'ten'" in str(err.value)
    with pytest.raises(ConfigurationError) as err:
        load_settings({"DRILLBOOK_CHECK_TIMEOUT": "0"})
    assert "DRILLBOOK_CHECK_TIMEOUT" in str(err.value)
    with pytest.raises(ConfigurationError) as err:
        load_settings({"DRILLBOOK_SUITE_CHECK": "sometimes"})
    assert "DRILLBOOK_SUITE_CHECK" in str(err.value)
    assert "s3cr3t" not in repr(load_settings({"DRILLBOOK_LEDGER_DSN": "postgresql://u:s3cr3t@h/db"}))


def test_the_cli_refuses_a_misspelt_variable_with_one_line_and_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRILLBOOK_")} | {"DRILLBOOK_OUTBOXX": "x"}
    proc = subprocess.run(
        [sys.executable, "-m", "drillbook", "validate", str(REPO / "include" / "drills.yaml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "DRILLBOOK_OUTBOXX" in proc.stderr and "DRILLBOOK_OUTBOX?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_importing_drillbook_leaves_the_process_alone():
    code = (
        "import logging; before = logging.getLogRecordFactory(); import drillbook, drillbook.cli, "
        "drillbook.settings; print(logging.getLogRecordFactory() is before)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr


def test_suite_checks_follow_the_entry_point_not_what_is_imported():
    auto = load_settings({})
    assert auto.suite_check_for("cli") is False and auto.suite_check_for("airflow") is False
    assert load_settings({"DRILLBOOK_SUITE_CHECK": "gx"}).suite_check_for("airflow") is True
    assert load_settings({"DRILLBOOK_SUITE_CHECK": "off"}).suite_check_for("cli") is False
    tree = ast.parse((PACKAGE / "drills" / "data_quality" / "suites.py").read_text())
    assert not [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and n.attr == "modules"
        and isinstance(n.value, ast.Name)
        and n.value.id == "sys"
    ]
    assert load_settings({"DRILLBOOK_SUITE_CHECK": "full"}).suite_check_for("cli") is True


def test_the_readme_settings_table_is_the_model():
    from drillbook.settings import settings_table_markdown

    readme = (REPO / "README.md").read_text()
    start, end = "<!-- settings-table:start -->\n", "\n<!-- settings-table:end -->"
    assert start in readme and end in readme
    table = readme.split(start, 1)[1].split(end, 1)[0]
    assert table == settings_table_markdown(), "regenerate the README table from drillbook.settings"


def test_an_empty_variable_counts_as_unset():
    from drillbook.settings import Settings, load_settings

    default = Settings.model_fields["suite_check"].default
    assert load_settings({"DRILLBOOK_SUITE_CHECK": ""}).suite_check == default
    with pytest.raises(ConfigurationError, match="DRILLBOOK_SUITE_CHECK"):
        load_settings({"DRILLBOOK_SUITE_CHECK": "sometimes"})
