"""The drill catalogue: ``include/drills.yaml`` loaded into pydantic models.

``load_catalogue(path)`` is the one entry point; it raises ``CatalogueError``
listing every problem as ``file:line: key.path: message``.
"""

from drillbook.catalogue.loader import DEFAULT_CATALOGUE, load_catalogue, resolve_catalogue_path
from drillbook.catalogue.models import Catalogue, Drill

__all__ = ["DEFAULT_CATALOGUE", "Catalogue", "Drill", "load_catalogue", "resolve_catalogue_path"]
