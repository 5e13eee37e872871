"""Every benchmark still runs end to end, at toy size, and prints its ratio and peak memory.

Benchmarks are not part of the default test run at full size (minutes each); this keeps
them from rotting between `make bench` runs. The figures printed here mean nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# each benchmark prints its ratio against a baseline ("ratio ... 1.05x") and its peak memory ("peak RSS ... 53 MB")
RATIO_RE = re.compile(r"ratio[^\n]*?(\d+(?:\.\d+)?)x")
PEAK_RE = re.compile(r"peak rss[^\n]*?(\d+(?:\.\d+)?) mb")

TOY_RUNS = {
    "backup_restore": ["--customers", "300", "--orders", "2000", "--rounds", "1", "--smoke"],
    "data_quality": ["--rows", "20000", "--repeat", "1", "--smoke"],
    "dag_parse": ["--drills", "4", "--rounds", "1"],
    "certificates": ["--endpoints", "12", "--rounds", "2", "--floor"],
    "ledger": ["--rows", "2000"],
    "evidence_pack": ["--rows", "2000"],
    "loader_bounds": ["--drills", "50", "--rounds", "1"],
    "pages": ["--rows", "2000", "--drills", "10", "--repeat", "3"],
    "physical": [
        "--rows",
        "2000",
        "--rounds",
        "1",
        "--smoke",
    ],  # needs pgbackrest and PostgreSQL 15 (.ci/run installs them)
    "scale": ["--small"],
    "barman": [
        "--rows",
        "2000",
        "--rounds",
        "1",
        "--smoke",
    ],  # needs barman and PostgreSQL 15 (.ci/run installs them)
}


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("name", sorted(TOY_RUNS))
def test_benchmark_runs_and_reports_a_ratio_and_peak_memory(name, pg):
    args = list(TOY_RUNS[name])
    if name in ("backup_restore", "data_quality"):
        args += ["--dsn", pg.admin_dsn]
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=380,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "plugins")},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = proc.stdout.lower()
    ratios = [float(r) for r in RATIO_RE.findall(out)]
    assert ratios and all(r > 0 for r in ratios), f"no 'ratio ... N.NNx' line:\n{proc.stdout[-2000:]}"
    peaks = [float(m) for m in PEAK_RE.findall(out)]
    assert peaks and all(m > 0 for m in peaks), f"no 'peak RSS ... N MB' line:\n{proc.stdout[-2000:]}"
