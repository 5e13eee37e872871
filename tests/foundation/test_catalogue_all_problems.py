"""Every problem at once: one run lists problems of every kind, each as ``file:line: key.path: message``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drillbook.catalogue import load_catalogue
from drillbook.errors import CatalogueError

REPO = Path(__file__).resolve().parents[2]

MIXED = """\
version: 1
defaults:
  timezone: Mars/Olympus
drills:
  - name: certs
    kind: certificates
    schedule: "0 6 * * *"
    files: [/etc/ssl/certs]
    thresholds: {warn: 7d, critical: 30d, critcal: 1d}
  - name: quality
    kind: data_quality
    schedule: "99 6 * * *"
    connection: src
    table: public.t
    suite: orders
  - name: certs
    kind: data_quality
    schedule: "@daily"
    connection: src
    table: public.t
    suite: nosuch
    tabel: public.x
  - name: paths
    kind: certificates
    schedule: "@daily"
    schedule: "@hourly"
    files: [/etc/ssl/certs]
"""


def test_every_kind_of_problem_is_reported_in_one_run(tmp_path):
    path = tmp_path / "drills.yaml"
    path.write_text(MIXED)
    proc = subprocess.run(
        [sys.executable, "-m", "drillbook", "validate", str(path)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "plugins"), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    expected = [
        # schema error on defaults (a model rule)
        f"{path}:2: defaults: unknown timezone 'Mars/Olympus'; expected an IANA name like 'Europe/Berlin'",
        # a misspelt key and, in the same drill, the cross-field rule it used to hide
        f"{path}:9: drills[0].thresholds.critcal: unknown key (misspelt? see the catalogue reference in the README)",
        f"{path}:9: drills[0].thresholds: critical (2592000s) must not be longer than warn (604800s)",
        # a schedule error
        f"{path}:12: drills[1].schedule: invalid cron expression '99 6 * * *': expected 5 fields like '0 3 * * *'",
        # a duplicate drill name
        f"{path}:16: drills[2].name: duplicate drill name 'certs' (first defined on line 5)",
        # a suite problem of a drill that also has a misspelt key
        f"{path}:21: drills[2].suite: suite 'nosuch' ({tmp_path / 'expectations' / 'nosuch.json'}): file not found; "
        f"expected a suite JSON at {str(tmp_path / 'expectations' / 'nosuch.json')!r}",
        f"{path}:22: drills[2].tabel: unknown key (misspelt? see the catalogue reference in the README)",
        # a duplicate YAML key
        f"{path}:26: drills[3].schedule: duplicate key 'schedule' (first defined on line 25)",
    ]
    assert lines[:-1] == expected
    assert lines[-1] == f"{len(expected)} problem(s) in {path}"


def test_issue_case_misspelt_key_bad_cron_and_duplicate_name_in_three_drills():
    text = textwrap.dedent("""\
        version: 1
        drills:
          - {name: a, kind: certificates, schedule: "0 6 * * *", filez: [x]}
          - {name: b, kind: certificates, schedule: "99 6 * * *", files: [x]}
          - {name: a, kind: certificates, schedule: "0 6 * * *", files: [x]}
    """)
    with pytest.raises(CatalogueError) as err:
        load_catalogue("drills.yaml", text=text)
    assert [p.split(": ", 2)[1] for p in err.value.problems] == [
        "drills[0].filez",
        "drills[0]",  # without the misspelt key the drill checks nothing: said in the same run
        "drills[1].schedule",
        "drills[2].name",
    ]
    assert (
        err.value.problems[1]
        == "drills.yaml:3: drills[0]: a certificates drill needs at least one of endpoints, files or acm"
    )


def test_a_valid_catalogue_with_anchors_and_on_key_has_no_problems():
    text = textwrap.dedent("""\
        version: 1
        drills:
          - name: a
            kind: certificates
            schedule: "0 6 * * *"
            files: [/etc/ssl/certs]
            thresholds: &t {warn: 30d, critical: 7d}
            notify: {on: [PASS, FAIL, ERROR]}
          - {name: b, kind: certificates, schedule: "@daily", files: [/etc/ssl/certs], thresholds: *t}
    """)
    catalogue = load_catalogue("drills.yaml", text=text)
    assert [d.name for d in catalogue.drills] == ["a", "b"]
    assert catalogue.drills[0].notify.on == ["PASS", "FAIL", "ERROR"]
