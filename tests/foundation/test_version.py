"""The version lives in one place: ``drillbook.__version__``; pyproject reads it (hatch) and uv.lock does not copy it."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import drillbook

REPO = Path(__file__).resolve().parents[2]


def test_the_version_is_declared_once():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"], (
        "pyproject.toml must read the version from plugins/drillbook/__init__.py"
    )
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "plugins/drillbook/__init__.py"
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    [entry] = [p for p in lock["package"] if p["name"] == "drillbook"]
    assert "version" not in entry, "uv.lock pins drillbook's version: run `uv lock` after changing pyproject"


def test_the_installed_distribution_carries_that_version():
    # `make install` built the editable install from pyproject: its metadata is what __init__.py says
    assert importlib.metadata.version("drillbook") == drillbook.__version__
