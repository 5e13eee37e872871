"""The catalogue an Airflow process works from, re-read when its file changes.

Rule this module enforces: every part of the Airflow layer (DAG factory, failure callback,
watchdog) reads the catalogue through ``current_catalogue()``, so one process sees one
catalogue per file version (cached on path and mtime). It imports nothing from the rest of
``drillbook.airflow``, so the callback can use it without importing the DAG factory back.
"""

from __future__ import annotations

import functools
from pathlib import Path

from drillbook.catalogue import Catalogue, load_catalogue, resolve_catalogue_path
from drillbook.settings import load_settings


@functools.lru_cache(maxsize=8)
def _cached_catalogue(path: str, mtime: float, gx_check: bool) -> Catalogue:
    return load_catalogue(path, gx_check=gx_check)


def current_catalogue() -> Catalogue:
    """The catalogue for this process (DRILLBOOK_CATALOGUE or include/drills.yaml), re-read when it changes.

    Called from the Airflow entry points (DAG files, tasks, callbacks), so it reads the settings itself;
    suites are checked for shape only (``DRILLBOOK_SUITE_CHECK=gx`` asks for GX): a DAG-file parse must not
    pay GX's import, and the data-quality drill builds its suite with GX when it runs.
    """
    settings = load_settings()
    path = resolve_catalogue_path(configured=settings.catalogue)
    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        mtime = 0.0
    return _cached_catalogue(str(path), mtime, settings.suite_check_for("airflow"))
