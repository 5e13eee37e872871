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
  changed since) unless the summary (``summary``) stands for the file, i.e. none of the files
  they read changed since they last passed; only the YAML parse and the duplicate-key
  walk, which depend on the bytes alone, are skipped. Only a catalogue that loaded without problems is
  written, so every error is still reported by ``load_catalogue`` with its line.

Where the cache lives and which of its files are trusted: ``cache_files``; the code fingerprint:
``fingerprint``; the summary written beside each entry: ``summary``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drillbook.catalogue.cache_files import cache_dir, private_dir, read_private, write_private
from drillbook.catalogue.fingerprint import code_fingerprint
from drillbook.catalogue.names import MAX_YAML_BYTES, resolve_catalogue_path
from drillbook.catalogue.summary import input_stamps, summary_stands, write_summary

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue

FORMAT = 1
_MEMO: dict[str, Catalogue] = {}


def cache_key(data: bytes) -> str:
    return hashlib.sha256(code_fingerprint().encode() + b"\0" + data).hexdigest()


def _read_entry(directory: Path, key: str) -> Any:
    """The cached data for ``key``, or None when there is none we may trust to be ours and well formed."""
    entry = read_private(directory / f"{key}.json", 4 * MAX_YAML_BYTES)
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
    write_private(directory, f"{key}.json", text)


def _from_cache(
    data: Any, file: Path, gx_suites: bool, *, checked: bool = False
) -> tuple[Catalogue, dict[str, Any] | None] | None:
    """Validate cached data again and rerun the file checks; None sends the caller to the full load.

    Also returns the stamps of the checks' inputs, taken before the checks ran (None: not summarisable, or
    ``checked``: a summary standing for this file says they passed on files that have not changed since, so
    they are not run again and there is nothing new to summarise)."""
    from pydantic import ValidationError

    from drillbook.catalogue.checks import run_checks
    from drillbook.catalogue.models import catalogue_model

    try:
        catalogue = catalogue_model().model_validate(data)  # the union of the kinds registered now
    except ValidationError:
        return None
    catalogue._path, catalogue._gx_suites = file, gx_suites
    if checked:
        return catalogue, None
    stamps = input_stamps(catalogue)
    if run_checks(catalogue):
        return None  # a reference or suite changed: the full load reports it with its line
    return catalogue, stamps


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
    from drillbook.catalogue.loader import load_catalogue
    from drillbook.catalogue.reader import FileProblem, decode, read_bytes

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
    directory = private_dir(cache_dir(cache_root), create=use_disk) if use_disk else None
    found = None
    if directory is not None:
        data = _read_entry(directory, key)
        if data is not None:
            found = _from_cache(
                data, file, gx_suites, checked=summary_stands(directory, file, raw, gx_suites)
            )
    if found is not None:
        catalogue, stamps = found
    else:
        captured: list[Any] = []
        catalogue = load_catalogue(file, text=text, gx_suites=gx_suites, _data_sink=captured.append)
        stamps = None
        if directory is not None and captured:
            _write_entry(directory, key, captured[0])
            from drillbook.catalogue.checks import run_checks

            # stamped before the checks run once more: the summary stands for a verdict reached on these files
            stamps = input_stamps(catalogue)
            if stamps is not None and run_checks(catalogue):
                stamps = None
    if directory is not None:
        write_summary(directory, catalogue, file, raw, stamps)
    _MEMO[memo_key] = catalogue
    return catalogue
