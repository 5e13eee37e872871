"""Fingerprint the code a compiled catalogue depends on, so that nothing written by older code is answered.

The fingerprint is the sha256 of drillbook's version and the source of every module that defines, loads or
checks a catalogue: the models' modules, the loader, reader and checks, and every registered kind's checks and
inputs. The summary's reader hashes the sources it lists again from the installed package
(``fingerprint_of``) without importing those modules.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import sys
import typing
from pathlib import Path
from typing import Any


def _model_types(annotation: Any, found: set[type]) -> None:
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in found:
            return
        found.add(annotation)
        for field in annotation.model_fields.values():
            _model_types(field.annotation, found)
        return
    for arg in typing.get_args(annotation):
        _model_types(arg, found)


def package_root() -> Path:
    import drillbook

    return Path(drillbook.__file__).resolve().parent


def _fingerprint_sources() -> list[tuple[str, str]]:
    """``(module, source path relative to the drillbook package)`` of every module that defines, loads or checks a
    catalogue, sorted; a module outside the package is listed with an empty path."""
    from drillbook.catalogue.models import Catalogue
    from drillbook.drills import registry

    models: set[type] = set()
    _model_types(Catalogue, models)
    modules = {m.__module__ for m in models} | {
        "drillbook.catalogue.checks",
        "drillbook.catalogue.common",
        "drillbook.catalogue.loader",
        "drillbook.catalogue.names",
        "drillbook.catalogue.reader",
        "drillbook.drills.data_quality.suites",
        "drillbook.drills.registry",
        *registry.BUILTIN,
    }
    for kind in registry.kinds().values():  # the checks and their inputs: a summary stands for their verdict
        for ref in (*kind.checks, kind.inputs or ""):
            if ref:
                modules.add(ref.partition(":")[0])
    root = package_root()
    out: list[tuple[str, str]] = []
    for name in sorted(modules):
        module = sys.modules.get(name) or importlib.import_module(name)
        source = getattr(module, "__file__", None)
        try:
            out.append((name, Path(source).resolve().relative_to(root).as_posix() if source else ""))
        except ValueError:
            out.append((name, ""))
    return out


def fingerprint_of(sources: list[tuple[str, str]], root: Path) -> str:
    """sha256 over drillbook's version and each module's name and source (read from ``root``); OSError if one is
    missing."""
    import drillbook

    digest = hashlib.sha256(f"drillbook {drillbook.__version__}\n".encode())
    for name, relative in sources:
        digest.update(name.encode() + b"\0")
        if relative:
            digest.update((root / relative).read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def code_sources() -> tuple[tuple[str, str], ...]:
    return tuple(_fingerprint_sources())


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 over drillbook's version and the source of the modules that define or check a catalogue."""
    return fingerprint_of(list(code_sources()), package_root())
