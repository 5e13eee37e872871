"""drillbook's own warm-up (GX import, suite load) is a phase of its own and is not part of the RTO.

The drill runs in a fresh process, so Great Expectations really is imported during it
(seconds); the RTO must still be the restore and verification phases alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from tests.backup_restore.conftest import make_drill
    from drillbook.drills.backup_restore.drill import run_backup_restore

    location, scratch_dsn, source_dsn, work, suites = sys.argv[1:6]
    drill = make_drill(location, verify={"suites": json.loads(suites)})
    gx_before = "great_expectations" in sys.modules
    result = run_backup_restore(drill=drill, scratch_dsn=scratch_dsn, source_dsn=source_dsn, work_dir=Path(work),
                                base_dir=Path("include"))
    print(json.dumps({"gx_before": gx_before, "verdict": result.verdict.value,
                      "codes": [f.code for f in result.findings],
                      "phases": [[p.name, p.seconds] for p in result.phases],
                      "rto": result.measurements.rto_seconds,
                      "warm": result.measurements.values.get("warm_up_seconds")}))
""")


def run_drill(dumps, shop, pg, tmp_path, suites: list[str]) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(dumps["custom"].parent),
            pg.admin_dsn,
            shop.dsn,
            str(tmp_path / "work"),
            json.dumps(suites),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{REPO / 'plugins'}:{REPO}"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measured_phases(out: dict) -> float:
    """Seconds of the top-level phases before ``measure``, warm-up left out (``dq ...`` phases nest in verify.quality)."""
    names = [name for name, _ in out["phases"]]
    return sum(
        seconds
        for name, seconds in out["phases"][: names.index("measure")]
        if name != "warm-up" and not name.startswith("dq ")
    )


@pytest.mark.timeout(360)
def test_gx_warm_up_is_recorded_and_left_out_of_the_rto(dumps, shop, pg, tmp_path):
    out = run_drill(dumps, shop, pg, tmp_path, ["orders"])
    assert out["gx_before"] is False
    assert out["verdict"] == "PASS", out["codes"]
    phases = dict((name, seconds) for name, seconds in out["phases"])
    assert "warm-up" in phases and out["warm"] is not None
    assert abs(out["warm"] - phases["warm-up"]) < 0.05
    assert out["warm"] > 0.5, "importing GX in a fresh process takes seconds; the warm-up did not load it"
    # the suite phases of the quality rung no longer pay GX's import
    assert phases["dq orders: load suite"] < out["warm"]
    measured = measured_phases(out)
    assert out["rto"] == pytest.approx(measured, abs=1.0), out["phases"]
    assert out["rto"] < measured + out["warm"] - 0.25  # would fail if the warm-up were counted


def test_without_suites_the_warm_up_is_short_and_still_reported(dumps, shop, pg, tmp_path):
    out = run_drill(dumps, shop, pg, tmp_path, [])
    assert out["verdict"] == "PASS", out["codes"]
    names = [name for name, _ in out["phases"]]
    assert names[:2] == ["scratch", "warm-up"]
    assert out["rto"] == pytest.approx(measured_phases(out), abs=1.0), out["phases"]
