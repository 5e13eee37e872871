"""The drill catalogue: ``include/drills.yaml`` loaded into pydantic models.

``load_catalogue(path)`` is the one entry point; it raises ``CatalogueError``
listing every problem as ``file:line: key.path: message``. The names below load
lazily: a kind's catalogue model imports ``catalogue.common``, and the loader
asks the kind registry for those models, so importing this package must not
import the loader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drillbook.catalogue.loader import DEFAULT_CATALOGUE, load_catalogue, resolve_catalogue_path
    from drillbook.catalogue.models import Catalogue, Drill

__all__ = ["DEFAULT_CATALOGUE", "Catalogue", "Drill", "load_catalogue", "resolve_catalogue_path"]


def __getattr__(name: str) -> Any:
    if name in ("DEFAULT_CATALOGUE", "load_catalogue", "resolve_catalogue_path"):
        from drillbook.catalogue import loader

        return getattr(loader, name)
    if name in ("Catalogue", "Drill"):
        from drillbook.catalogue import models

        return getattr(models, name)
    raise AttributeError(name)
