"""Where the catalogue is and the names of schedule presets: the standard library only, no pydantic models.

The watchdog's DAG file reads its catalogue's summary (``catalogue.summary.read_summary``) without the
catalogue's models; what it needs of the catalogue package lives here. ``common`` and ``loader`` re-export
these names.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

#: the largest catalogue (or settings) YAML file read; ``reader`` enforces it (YAML costs far more memory per
#: byte than JSON once composed)
MAX_YAML_BYTES = 4 * 1024 * 1024


def _shipped_catalogue() -> Path:
    """A checkout's ``include/drills.yaml``; after ``pip install``, the copy shipped as package data.

    The wheel carries ``include/`` as ``drillbook/sample/include`` (pyproject's force-include), so the
    default works without a checkout; in a checkout the repository's own file wins.
    """
    checkout = Path(__file__).resolve().parents[3] / "include" / "drills.yaml"
    if checkout.is_file():
        return checkout
    return Path(str(importlib.resources.files("drillbook.sample") / "include" / "drills.yaml"))


#: The shipped catalogue; ``DRILLBOOK_CATALOGUE`` overrides it. Defined outside ``loader`` so that modules the
#: loader calls (suite checks) can name it without importing the loader back.
DEFAULT_CATALOGUE = _shipped_catalogue()


def resolve_catalogue_path(
    path: str | os.PathLike[str] | None = None, *, configured: str | os.PathLike[str] | None = None
) -> Path:
    """Return the catalogue path: argument, else ``configured`` (setting DRILLBOOK_CATALOGUE), else the shipped one."""
    if path:
        return Path(path)
    if configured:
        return Path(configured)
    return DEFAULT_CATALOGUE


#: schedule preset -> the digest's name for its period (``dr_digest__daily``)
PRESET_NAMES = {
    "@hourly": "hourly",
    "@daily": "daily",
    "@midnight": "daily",
    "@weekly": "weekly",
    "@monthly": "monthly",
    "@quarterly": "quarterly",
    "@yearly": "yearly",
    "@annually": "yearly",
}
