"""After ``pip install`` (no checkout beside the package) the default catalogue is the one shipped as package data."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_default_catalogue_is_package_data_without_a_checkout(tmp_path):
    # the wheel's layout: drillbook/ with include/ force-included as drillbook/sample/include (pyproject)
    site = tmp_path / "site-packages"
    shutil.copytree(
        REPO / "plugins" / "drillbook", site / "drillbook", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(REPO / "include", site / "drillbook" / "sample" / "include")
    code = (
        "from drillbook.catalogue import DEFAULT_CATALOGUE, load_catalogue; "
        "print(DEFAULT_CATALOGUE); print(len(load_catalogue(DEFAULT_CATALOGUE).drills))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {code}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    path, count = out.stdout.split()
    assert Path(path) == site / "drillbook" / "sample" / "include" / "drills.yaml"
    assert int(count) >= 1


def test_the_wheel_ships_the_catalogue():
    text = (REPO / "pyproject.toml").read_text()
    assert '"include" = "drillbook/sample/include"' in text
