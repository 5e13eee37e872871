"""Load a catalogue once per content: an in-process memo and an on-disk cache shared by every DAG file's parse.

Airflow parses each DAG file in its own process, so without a shared cache every
file of a 1,000-drill catalogue pays the YAML parse, line map and validation again.
Rules this module enforces:

- the key is the sha256 of the catalogue's bytes, drillbook's version and the source
  of every module that defines the catalogue's models or checks (a code change can
  never be answered from a cache written by older code);
- the cache holds the *parsed data* as JSON (no pickle, nothing executable) and is
  untrusted input like the catalogue itself: a hit is validated again by the same
  pydantic models and the file checks run again (references and suites may have
  changed since); only the YAML parse and the duplicate-key walk, which depend on
  the bytes alone, are skipped. Only a catalogue that loaded without problems is
  written, so every error is still reported by ``load_catalogue`` with its line;
- the directory is ``cache_root`` (the entry point passes setting ``DRILLBOOK_CACHE_DIR``) or ``$XDG_CACHE_HOME/drillbook`` or
  ``~/.cache/drillbook``, subdirectory ``catalogue``, created 0700; a directory or
  file owned by another user, writable by group or others, a symlink, larger than
  the catalogue bound or not the expected JSON is ignored (never trusted, never an
  error): the catalogue is then loaded from its file as if there were no cache;
- writing is best effort and atomic (a temporary file renamed into place); at most
  ``MAX_ENTRIES`` entries are kept.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
import sys
import tempfile
import typing
from pathlib import Path
from typing import Any

from drillbook.catalogue.loader import load_catalogue, resolve_catalogue_path
from drillbook.catalogue.models import Catalogue, catalogue_model
from drillbook.catalogue.reader import MAX_YAML_BYTES, FileProblem, decode, read_bytes

FORMAT = 1
MAX_ENTRIES = 32
_MEMO: dict[str, Catalogue] = {}


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where compiled catalogues are kept for this user: under ``explicit`` (the entry point's setting
    ``DRILLBOOK_CACHE_DIR``), else the platform's cache directory."""
    if explicit:
        return Path(explicit) / "catalogue"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "drillbook" / "catalogue"


def _private_dir(directory: Path, create: bool) -> Path | None:
    """``directory`` if it is ours alone (owner, mode, not a symlink); None otherwise."""
    try:
        if create:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(directory)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        return None
    return directory


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


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 over drillbook's version and the source of the modules that define or check a catalogue."""
    import drillbook
    from drillbook.catalogue import checks, common, loader, reader

    models: set[type] = set()
    _model_types(Catalogue, models)
    modules = {m.__module__ for m in models} | {
        checks.__name__,
        common.__name__,
        loader.__name__,
        reader.__name__,
        "drillbook.drills.data_quality.suites",
        "drillbook.drills.registry",
    }
    digest = hashlib.sha256(f"drillbook {drillbook.__version__}\n".encode())
    for name in sorted(modules):
        module = sys.modules.get(name)
        if module is None:
            __import__(name)
            module = sys.modules[name]
        source = getattr(module, "__file__", None)
        digest.update(name.encode() + b"\0")
        if source:
            digest.update(Path(source).read_bytes())
    return digest.hexdigest()


def cache_key(data: bytes) -> str:
    return hashlib.sha256(code_fingerprint().encode() + b"\0" + data).hexdigest()


def _read_entry(directory: Path, key: str) -> Any:
    """The cached data for ``key``, or None when there is none we may trust to be ours and well formed."""
    try:
        fd = os.open(directory / f"{key}.json", os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if (
            not stat.S_ISREG(info.st_mode)
            or info.st_uid != os.geteuid()
            or info.st_mode & 0o022
            or info.st_size > 4 * MAX_YAML_BYTES
        ):
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(4 * MAX_YAML_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        entry = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != FORMAT or entry.get("key") != key:
        return None
    data = entry.get("data")
    return data if isinstance(data, dict) else None


def _write_entry(directory: Path, key: str, data: Any) -> None:
    try:
        text = json.dumps({"format": FORMAT, "key": key, "data": data}, ensure_ascii=False, allow_nan=False)
        if (
            json.loads(text)["data"] != data
        ):  # YAML keys that are not strings, or dates: not representable, skip
            return
    except (TypeError, ValueError):
        return
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, directory / f"{key}.json")
        entries = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in entries[:-MAX_ENTRIES]:
            old.unlink(missing_ok=True)
    except OSError:
        return


def _from_cache(data: Any, file: Path, gx_suites: bool) -> Catalogue | None:
    """Validate cached data again and rerun the file checks; None sends the caller to the full load."""
    from pydantic import ValidationError

    from drillbook.catalogue.checks import run_checks

    try:
        catalogue = catalogue_model().model_validate(data)  # the union of the kinds registered now
    except ValidationError:
        return None
    catalogue._path, catalogue._gx_suites = file, gx_suites
    if run_checks(catalogue):
        return None  # a reference or suite changed: the full load reports it with its line
    return catalogue


def load_compiled_catalogue(
    path: str | os.PathLike[str] | None = None,
    *,
    use_disk: bool = True,
    gx_suites: bool = False,
    cache_root: str | os.PathLike[str] | None = None,
) -> Catalogue:
    """``load_catalogue(path, gx_suites=...)`` answered from the memo or the on-disk cache when the bytes were seen before.

    ``gx_suites`` and ``cache_root`` come from the entry point's settings (``Settings.suite_check_for``,
    ``DRILLBOOK_CACHE_DIR``); ``cache_root`` None is the platform's cache directory.
    """
    file = resolve_catalogue_path(path)
    try:
        raw = read_bytes(file, max_bytes=MAX_YAML_BYTES)
        text = decode(raw, str(file))
    except FileProblem:
        return load_catalogue(file, gx_suites=gx_suites)  # reports the problem as a CatalogueError
    key = cache_key(raw)
    memo_key = f"{key}:{file}:{gx_suites}"
    if memo_key in _MEMO:
        return _MEMO[memo_key]
    directory = _private_dir(cache_dir(cache_root), create=use_disk) if use_disk else None
    catalogue = None
    if directory is not None:
        data = _read_entry(directory, key)
        if data is not None:
            catalogue = _from_cache(data, file, gx_suites)
    if catalogue is None:
        captured: list[Any] = []
        catalogue = load_catalogue(file, text=text, gx_suites=gx_suites, _data_sink=captured.append)
        if directory is not None and captured:
            _write_entry(directory, key, captured[0])
    _MEMO[memo_key] = catalogue
    return catalogue
