"""The catalogue an Airflow process works from, re-read when its file changes.

Rule this module enforces: every part of the Airflow layer (DAG factory, failure callback,
watchdog) reads the catalogue through ``current_catalogue()``, so one process sees one
catalogue per file version (cached on path and mtime), and the DAG files' parse processes share
one compiled form through ``catalogue.compiled`` (parsed once per content, re-validated from a
private on-disk cache). ``current_summary()`` is the watchdog DAG file's way in: the catalogue's
summary when one stands for this file version, the catalogue otherwise. It imports nothing from the rest of
``drillbook.airflow``, nor the catalogue's models until a catalogue is loaded, so the callback can use it
without importing the DAG factory back.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from drillbook.catalogue.names import resolve_catalogue_path
from drillbook.catalogue.summary import CatalogueSummary, read_summary

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue
    from drillbook.settings import Settings


@functools.lru_cache(maxsize=8)
def _cached_catalogue(path: str, mtime: float, gx_suites: bool, cache_root: Path | None) -> Catalogue:
    from drillbook.catalogue.compiled import load_compiled_catalogue

    return load_compiled_catalogue(path, gx_suites=gx_suites, cache_root=cache_root)


def _catalogue_for(settings: Settings) -> Catalogue:
    path = resolve_catalogue_path(configured=settings.catalogue)
    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        mtime = 0.0
    return _cached_catalogue(str(path), mtime, settings.suite_check_for("airflow"), settings.cache_dir)


def current_catalogue() -> Catalogue:
    """The catalogue for this process (DRILLBOOK_CATALOGUE or include/drills.yaml), re-read when it changes.

    Called from the Airflow entry points (DAG files, tasks, callbacks), so it reads the settings itself.
    """
    from drillbook.settings import load_settings

    return _catalogue_for(
        load_settings()
    )  # the settings once, here: the catalogue, its suite check, the cache


def current_summary() -> CatalogueSummary | Catalogue:
    """What the watchdog and digest DAGs are built from: the summary of the current catalogue when one stands for
    it (``catalogue.summary.read_summary``: written after a load whose checks passed, nothing changed since),
    else ``current_catalogue()``, which loads it and reports any problem as before."""
    from drillbook.settings import load_settings

    settings = load_settings()
    summary = read_summary(
        resolve_catalogue_path(configured=settings.catalogue),
        gx_suites=settings.suite_check_for("airflow"),
        cache_root=settings.cache_dir,
    )
    return summary if summary is not None else _catalogue_for(settings)
