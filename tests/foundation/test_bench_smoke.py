"""Every benchmark still runs end to end, at toy size, and prints its ratio and peak memory.

Benchmarks are not part of the default test run at full size (minutes each); this keeps
them from rotting between `make bench` runs. The figures printed here mean nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

TOY_RUNS = {
    "backup_restore": ["--customers", "300", "--orders", "2000", "--rounds", "1", "--smoke"],
    "data_quality": ["--rows", "20000", "--repeat", "1", "--smoke"],
    "certificates": ["--endpoints", "12"],
    "ledger": ["--rows", "2000"],
}


@pytest.mark.timeout(400)
@pytest.mark.parametrize("name", sorted(TOY_RUNS))
def test_benchmark_runs_and_reports_a_ratio_and_peak_memory(name, pg):
    args = list(TOY_RUNS[name])
    if name in ("backup_restore", "data_quality"):
        args += ["--dsn", pg.admin_dsn]
    proc = subprocess.run([sys.executable, str(REPO / "bench" / f"{name}.py"), *args], capture_output=True, text=True,
                          timeout=380, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO / "plugins")})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = proc.stdout.lower()
    assert "ratio" in out or "x" in out, proc.stdout[-2000:]
    assert "rss" in out or "memory" in out, proc.stdout[-2000:]
