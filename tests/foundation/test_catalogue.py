"""The catalogue: the shipped file is valid, and every kind of mistake is reported with its line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drillbook.catalogue import load_catalogue
from drillbook.catalogue.common import format_duration, parse_duration, schedule_interval_seconds
from drillbook.errors import CatalogueError, ConfigurationError

REPO = Path(__file__).resolve().parents[2]

BASE = """\
version: 1
defaults:
  timezone: UTC
drills:
"""

GOOD_DRILL = """\
  - name: shop
    kind: backup_restore
    schedule: "0 3 * * *"
    controls: ["SOC2:A1.2"]
    backup: {location: /srv/backups}
    scratch: {connection: drillbook_scratch}
    objectives: {rto: 15m, rpo: 26h}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(CatalogueError) as err:
        load_catalogue("drills.yaml", text=textwrap.dedent(text))
    return err.value.problems


def test_shipped_catalogue_is_valid():
    catalogue = load_catalogue(REPO / "include" / "drills.yaml")
    kinds = {d.kind for d in catalogue.drills}
    assert kinds == {"backup_restore", "data_quality", "certificates", "alert_path"}


def test_healthy_minimal_catalogue_loads():
    catalogue = load_catalogue("drills.yaml", text=BASE + GOOD_DRILL)
    drill = catalogue.drill("shop")
    assert drill.objectives.rto == 900 and drill.objectives.rpo == 26 * 3600
    with pytest.raises(ConfigurationError, match="no drill named 'nope'"):
        catalogue.drill("nope")


def test_misspelt_key_bad_cron_and_duplicate_name_are_all_reported_with_lines(tmp_path):
    text = (
        BASE
        + GOOD_DRILL
        + """\
  - name: shop
    kind: certificates
    schedule: "61 * * * *"
    files: [/etc/ssl/certs]
    thresholds: {warn: 30d, critcal: 7d}
"""
    )
    path = tmp_path / "drills.yaml"
    path.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "drillbook", "validate", str(path)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "plugins"), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert f"{path}:12: drills[1].name: duplicate drill name 'shop' (first defined on line 5)" in lines
    assert any(
        line.startswith(f"{path}:14: drills[1].schedule: invalid cron expression '61 * * * *'")
        for line in lines
    )
    assert any(line.startswith(f"{path}:16: drills[1].thresholds.critcal: unknown key") for line in lines)
    assert "3 problem(s)" in lines[-1]


def test_validate_prints_one_summary_line_per_drill_and_exits_zero():
    proc = subprocess.run(
        [sys.executable, "-m", "drillbook", "validate", str(REPO / "include" / "drills.yaml")],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "plugins"), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert sum(line.startswith("ok  ") for line in proc.stdout.splitlines()) == 4


def test_missing_connection_id_is_reported():
    text = BASE + GOOD_DRILL.replace("    scratch: {connection: drillbook_scratch}\n", "    scratch: {}\n")
    assert problems_of(text) == ["drills.yaml:10: drills[0].scratch.connection: required key is missing"]


def test_s3_backup_without_aws_connection_is_reported():
    text = BASE + GOOD_DRILL.replace("{location: /srv/backups}", "{location: s3://bucket/prefix/}")
    [problem] = problems_of(text)
    assert problem.startswith("drills.yaml:5: drills[0]: ") and "backup.connection" in problem


def test_rpo_objective_longer_than_a_live_schedule_allows():
    text = BASE + GOOD_DRILL.replace("{location: /srv/backups}", "{location: live}").replace(
        "    scratch:", "    source: {connection: drillbook_source}\n    scratch:"
    ).replace("rpo: 26h", "rpo: 4h")
    [problem] = problems_of(text)
    assert "objectives.rpo is 4h 00m but schedule '0 3 * * *' runs only every 1d 0h" in problem


def test_scratch_equal_to_source_is_refused_in_the_catalogue():
    text = BASE + GOOD_DRILL.replace(
        "    scratch:", "    source: {connection: drillbook_scratch}\n    scratch:"
    )
    [problem] = problems_of(text)
    assert "drills never restore into a source" in problem


def test_unknown_kind_bad_control_and_bad_duration():
    text = (
        BASE
        + """\
  - name: x
    kind: backup_restor
    schedule: "@daily"
  - name: y
    kind: certificates
    schedule: "@daily"
    controls: ["soc2 a1.2"]
    files: [/x]
    timeout: soon
"""
    )
    problems = problems_of(text)
    assert any(":6: drills[0].kind:" in p and "unknown kind 'backup_restor'" in p for p in problems)
    assert any(":11: drills[1].controls[0]: expected a control id" in p for p in problems)
    assert any(":13: drills[1].timeout: expected a duration" in p for p in problems)


def test_duplicate_yaml_key_is_an_error_not_silently_overwritten():
    text = BASE + GOOD_DRILL + '    schedule: "@hourly"\n'
    assert (
        "drills.yaml:12: drills[0].schedule: duplicate key 'schedule' (first defined on line 7)"
        in problems_of(text)
    )


def test_yaml_syntax_error_empty_and_missing_files(tmp_path):
    assert problems_of("drills: [\n")[0].startswith("drills.yaml:2: (yaml):")
    assert "the catalogue is empty" in problems_of("\n")[0]
    with pytest.raises(CatalogueError, match="file not found"):
        load_catalogue(tmp_path / "absent.yaml")


def test_bad_timezone():
    assert any(
        "unknown timezone 'Mars/Olympus'" in p
        for p in problems_of(BASE.replace("UTC", "Mars/Olympus") + GOOD_DRILL)
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("4h", 14400),
        ("7d", 604800),
        ("1h30m", 5400),
        ("4w", 2419200),
        ("1w2d", 777600),
        (45, 45),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "15", "15 minutes", "-5m", True, None, "1y", "w"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_schedule_interval_and_format():
    assert schedule_interval_seconds("@hourly") == 3600
    assert schedule_interval_seconds("0 9 * * 1-5") == 3 * 86400  # Friday -> Monday
    assert format_duration(272) == "4m 32s"


def test_catalogue_paths_resolve_from_the_catalogue_directory_never_the_cwd(tmp_path, monkeypatch):
    from drillbook.catalogue.common import resolve_relative

    elsewhere = tmp_path / "worker-cwd"
    (elsewhere / "backups").mkdir(parents=True)  # a decoy the old cwd-first lookup would have picked
    monkeypatch.chdir(elsewhere)
    base = tmp_path / "repo" / "include"
    assert resolve_relative("../var/backups", base) == tmp_path / "repo" / "var" / "backups"
    assert resolve_relative("backups", base) == base / "backups"
    assert resolve_relative("/srv/b", base) == Path("/srv/b")
    assert resolve_relative("backups", None) == elsewhere / "backups"  # ad hoc CLI argument
