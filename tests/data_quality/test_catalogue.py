"""Suites named by the catalogue are checked by ``drillbook validate``: file, line, suite, expectation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.data_quality.conftest import REPO, SHIPPED_SUITES

CATALOGUE = """\
version: 1
drills:
  - name: orders_quality
    kind: data_quality
    schedule: "@hourly"
    connection: drillbook_source
    table: public.orders
    suite: {suite}
  - name: shop_nightly
    kind: backup_restore
    schedule: "30 3 * * *"
    backup: {{location: /srv/backups}}
    scratch: {{connection: drillbook_scratch}}
    objectives: {{rto: 15m, rpo: 26h}}
    verify:
      suites: [{restore_suite}]
"""
SUITE_LINE = 8  # line of "suite:" above
RESTORE_SUITES_LINE = 16


def write(tmp_path: Path, *, suite: str = "orders", restore_suite: str = "orders", edit=None) -> Path:
    expectations = tmp_path / "expectations"
    expectations.mkdir(exist_ok=True)
    data = json.loads((SHIPPED_SUITES / "orders.json").read_text())
    if edit is not None:
        edit(data)
    (expectations / "orders.json").write_text(json.dumps(data, indent=2))
    path = tmp_path / "drills.yaml"
    path.write_text(CATALOGUE.format(suite=suite, restore_suite=restore_suite))
    return path


def load(path: Path):
    """Load as an entry point does: the settings (conftest sets DRILLBOOK_SUITE_CHECK=gx) say whether GX checks run."""
    from drillbook.catalogue import load_catalogue
    from drillbook.settings import load_settings

    return load_catalogue(path, gx_suites=load_settings().suite_check_for("cli"))


def problems(path: Path) -> list[str]:
    from drillbook.errors import CatalogueError

    with pytest.raises(CatalogueError) as err:
        load(path)
    return err.value.problems


def by_location(found: list[str]) -> dict[str, str]:
    """``{"drills[0].suite": message, ...}``: each problem by where it is, so no check leans on the list's order."""
    out: dict[str, str] = {}
    for problem in found:
        _path, _line, location, message = problem.split(":", 3)  # "<file>:<line>: <location>: <message>"
        assert location.strip() not in out, f"two problems at {location}: {found}"
        out[location.strip()] = message.strip()
    return out


def test_valid_suites_load(tmp_path):
    from drillbook.catalogue import load_catalogue

    catalogue = load_catalogue(write(tmp_path))
    assert [d.name for d in catalogue.drills] == ["orders_quality", "shop_nightly"]


def test_shipped_catalogue_and_suite_are_valid():
    from drillbook.catalogue import load_catalogue

    load_catalogue(REPO / "include" / "drills.yaml")


def test_misspelt_expectation_type_is_a_catalogue_error_with_its_line(tmp_path):
    def misspell(data):
        data["expectations"][2]["type"] = "expect_column_values_to_not_be_nul"

    path = write(tmp_path, edit=misspell)
    suite_file = tmp_path / "expectations" / "orders.json"
    problem = (
        f"suite 'orders' ({suite_file}): expectations[2]: unknown expectation type 'expect_column_values_to_not_be_nul'; "
        "did you mean 'expect_column_values_to_not_be_null'?"
    )
    # both drills that name the suite report it, each at its own line, in line order, and nothing else
    assert problems(path) == [
        f"{path}:{SUITE_LINE}: drills[0].suite: {problem}",
        f"{path}:{RESTORE_SUITES_LINE}: drills[1].verify.suites[0]: {problem}",
    ]


def test_misspelt_type_via_the_cli(tmp_path, capsys):
    from drillbook.cli import main

    def misspell(data):
        data["expectations"][0]["type"] = "expect_table_row_count_to_be_betwen"

    path = write(tmp_path, edit=misspell)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{SUITE_LINE}: drills[0].suite:" in err
    assert "unknown expectation type 'expect_table_row_count_to_be_betwen'" in err


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"colum": "id"}, "colum: unknown argument"),
        ({}, "column: required argument is missing"),
        ({"column": "status", "value_set": 3}, "value_set: value is not a valid list"),
    ],
)
def test_bad_arguments_are_catalogue_errors(tmp_path, kwargs, needle):
    def edit(data):
        data["expectations"][7]["kwargs"] = kwargs

    found = by_location(problems(write(tmp_path, edit=edit)))
    assert set(found) == {"drills[0].suite", "drills[1].verify.suites[0]"}
    for message in found.values():
        assert message.startswith("suite 'orders' (")
        assert "expectations[7] (expect_column_values_to_be_in_set): invalid arguments:" in message
        assert needle in message


def test_missing_suite_and_bad_json_and_bad_meta(tmp_path):
    found = problems(write(tmp_path, suite="nope"))
    assert len(found) == 1
    assert f":{SUITE_LINE}: drills[0].suite: suite 'nope'" in found[0] and "file not found" in found[0]

    path = write(tmp_path)
    (tmp_path / "expectations" / "orders.json").write_text('{"name": "orders",\n "expectations": [,]}')
    assert "not valid JSON at line 2" in problems(path)[0]

    def edit(data):
        data["meta"]["severity"] = "urgent"
        data["expectations"][3]["meta"] = {"severity": "huge"}
        data["expectations"][9]["kwargs"]["min_value"] = 10**9

    text = "\n".join(problems(write(tmp_path, edit=edit)))
    assert "meta.severity: expected one of" in text and "'urgent'" in text
    assert "expectations[3] (expect_column_values_to_be_unique): meta.severity" in text
    assert "min_value 1000000000 is greater than max_value 10000000" in text


def test_restore_suite_must_name_its_table(tmp_path):
    def edit(data):
        del data["meta"]["drillbook"]

    found = problems(write(tmp_path, edit=edit))
    assert len(found) == 1
    assert f":{RESTORE_SUITES_LINE}: drills[1].verify.suites[0]: suite 'orders'" in found[0]
    assert "names no table" in found[0]


def test_fast_mode_skips_gx_but_keeps_structure(tmp_path, monkeypatch):
    """Inside Airflow's DAG processor the GX part waits for run time; the run reports it."""

    monkeypatch.setenv("DRILLBOOK_SUITE_CHECK", "fast")

    def misspell(data):
        data["expectations"][2]["type"] = "expect_column_values_to_not_be_nul"

    load(write(tmp_path, edit=misspell))  # no GX: not caught here
    assert len(problems(write(tmp_path, suite="nope"))) == 1  # but a missing file is


def test_invalid_suite_at_run_time_is_config_invalid(tmp_path):
    from drillbook.drills.data_quality import run_data_quality

    def misspell(data):
        data["expectations"][2]["type"] = "expect_column_values_to_not_be_nul"

    write(tmp_path, edit=misspell)
    result = run_data_quality(
        drill_name="x",
        dsn="postgresql://nobody@127.0.0.1:1/x",
        table="public.orders",
        suite="orders",
        suites_dir=tmp_path / "expectations",
    )
    assert result.verdict.value == "ERROR"
    assert result.codes() == ["CONFIG_INVALID"]
    assert "unknown expectation type" in result.findings[0].message


def test_ad_hoc_suite_path(tmp_path):
    from drillbook.drills.data_quality.suites import load_suite, suite_path

    shutil.copy(SHIPPED_SUITES / "orders.json", tmp_path / "mine.json")
    assert suite_path(str(tmp_path / "mine.json"), SHIPPED_SUITES) == tmp_path / "mine.json"
    assert load_suite(str(tmp_path / "mine.json"), suites_dir=SHIPPED_SUITES).table == "public.orders"


def test_suite_checks_know_every_severity_and_only_those() -> None:
    """suites.py writes Severity's values out (so a DAG file's parse does not import the result models); a new
    severity, or a renamed one, must reach the suite checks too."""
    from drillbook.drills.data_quality import suites
    from drillbook.result import Severity

    assert suites._SEVERITIES == [s.value for s in Severity]
    assert Severity.HIGH.value == "high"  # severity_of's default
