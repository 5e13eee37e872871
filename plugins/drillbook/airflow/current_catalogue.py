"""The catalogue an Airflow process works from, re-read when its file changes.

Rule this module enforces: every part of the Airflow layer (DAG factory, failure callback,
watchdog) reads the catalogue through ``current_catalogue()``, so one process sees one
catalogue per file version (cached on path and mtime), and the DAG files' parse processes share
one compiled form through ``catalogue.compiled`` (parsed once per content, re-validated from a
private on-disk cache). It imports nothing from the rest of
``drillbook.airflow``, so the callback can use it without importing the DAG factory back.
"""

from __future__ import annotations

import functools
from pathlib import Path

from drillbook.catalogue import Catalogue, resolve_catalogue_path
from drillbook.catalogue.compiled import load_compiled_catalogue


@functools.lru_cache(maxsize=8)
def _cached_catalogue(path: str, mtime: float, gx_suites: bool, cache_root: Path | None) -> Catalogue:
    return load_compiled_catalogue(path, gx_suites=gx_suites, cache_root=cache_root)


def current_catalogue() -> Catalogue:
    """The catalogue for this process (DRILLBOOK_CATALOGUE or include/drills.yaml), re-read when it changes.

    Called from the Airflow entry points (DAG files, tasks, callbacks), so it reads the settings itself.
    """
    from drillbook.settings import load_settings

    settings = load_settings()  # once, here: the catalogue, its suite check and the compiled cache
    path = resolve_catalogue_path(configured=settings.catalogue)
    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        mtime = 0.0
    return _cached_catalogue(str(path), mtime, settings.suite_check_for("airflow"), settings.cache_dir)
