"""Write a catalogue's summary after a load whose checks passed; answer from it only while it stands.

The *summary* (``read_summary``) is what the watchdog's DAG file needs of a catalogue: its path and the
defaults its DAGs are built from, without the models (importing them and validating 1,000 drills cost that
file ~0.1 s of its ~0.13 s). It is written beside the cache entry after a load whose file checks passed, and
stands for that load's verdict, so it is answered only while nothing that decided the verdict changed:

- its key is the sha256 of the catalogue's bytes and path; it records the code fingerprint with the
  drillbook modules it was taken over (the kinds' check modules included), hashed again from the installed
  package on every read, and a stat stamp (mode, size, mtime, ctime, inode, device) of every file the kinds'
  checks look at (``DrillKind.inputs``), taken before the checks ran;
- none is written when suites are checked with GX (its verdict depends on GX too), when a kind was
  registered beyond the built-in ones, or when a kind with checks does not name its inputs;
- any difference, an entry that is not ours or not the expected JSON, sends the caller to the full load,
  which reports every problem as before; the defaults it holds are type-checked when read.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

# only what the summary's reader needs at module level: the watchdog's DAG file imports this module without the
# catalogue's models, the loader or PyYAML's parse
from drillbook.catalogue.cache_files import cache_dir, private_dir, read_private, write_private
from drillbook.catalogue.fingerprint import code_fingerprint, code_sources, fingerprint_of, package_root
from drillbook.catalogue.names import MAX_YAML_BYTES, resolve_catalogue_path

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue

SUMMARY_FORMAT = 1
MAX_SUMMARY_BYTES = 1024 * 1024


def _stamp(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return [st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def input_stamps(catalogue: Catalogue) -> dict[str, Any] | None:
    """``{path: stamp}`` of every file the kinds' checks of ``catalogue`` look at; None when that is not known."""
    from drillbook.drills import registry

    if catalogue.gx_suites_checked or not registry.only_builtin():
        return None
    kinds = registry.kinds()
    stamps: dict[str, Any] = {}
    for drill in catalogue.drills:
        kind = kinds.get(drill.kind)
        paths = kind.check_inputs(drill, catalogue) if kind is not None else None
        if paths is None:
            return None
        for path in paths:
            if path not in stamps:
                stamps[path] = _stamp(path)
    return stamps


def summary_key(file: Path, raw: bytes) -> str:
    return hashlib.sha256(f"summary {SUMMARY_FORMAT}\0{file}\0".encode() + raw).hexdigest()


# NamedTuples, not dataclasses: the watchdog's DAG file imports this module, and four frozen dataclasses cost it
# 3 ms to define
class WatchdogSummary(typing.NamedTuple):
    schedule: str


class DigestSummary(typing.NamedTuple):
    schedules: tuple[str, ...]


class DefaultsSummary(typing.NamedTuple):
    """The catalogue's ``defaults`` that its DAGs' policy reads, named as on ``Defaults``."""

    timezone: str
    owner: str
    retries: int
    retry_delay: float
    watchdog: WatchdogSummary
    digest: DigestSummary


class CatalogueSummary(typing.NamedTuple):
    """What the watchdog and digest DAGs are built from, answering as the ``Catalogue`` it stands for does."""

    path: Path
    defaults: DefaultsSummary

    def owner_of(self, drill: Any) -> str:
        return str(drill.owner or self.defaults.owner)


def _summary_doc(catalogue: Catalogue, file: Path, key: str, stamps: dict[str, Any]) -> dict[str, Any] | None:
    fingerprint, sources = code_fingerprint(), code_sources()
    if any(not relative for _, relative in sources):
        return None  # a module outside the package: it could not be hashed again where it is read
    d = catalogue.defaults
    return {
        "format": SUMMARY_FORMAT,
        "key": key,
        "path": str(file),
        "code": {"fingerprint": fingerprint, "sources": [list(s) for s in sources]},
        "inputs": [[path, stamp] for path, stamp in stamps.items()],
        "defaults": {
            "timezone": d.timezone,
            "owner": d.owner,
            "retries": d.retries,
            "retry_delay": float(d.retry_delay),
            "watchdog_schedule": d.watchdog.schedule,
            "digest_schedules": list(d.digest.schedules),
        },
    }


def write_summary(
    directory: Path, catalogue: Catalogue, file: Path, raw: bytes, stamps: dict[str, Any] | None
) -> None:
    """Write the summary of a catalogue whose checks passed with ``stamps`` unless the same one is there."""
    if stamps is None:
        return
    key = summary_key(file, raw)
    doc = _summary_doc(catalogue, file, key, stamps)
    if doc is None:
        return
    text = json.dumps(doc, ensure_ascii=False, allow_nan=False, sort_keys=True)
    name = f"summary-{key}.json"
    if read_private(directory / name, MAX_SUMMARY_BYTES) == json.loads(text):
        return  # the DAG processor re-parses every file every 30 s: write only what changed
    write_private(directory, name, text)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def _summary_from(
    doc: Any, file: Path, key: str, *, fingerprint: str | None = None
) -> CatalogueSummary | None:
    """The summary in ``doc`` if it is well formed and everything it stands for is unchanged.

    ``fingerprint``: this process's ``code_fingerprint()`` when it has it (the loader's path); without it the
    sources the summary lists are hashed again from the installed package (the watchdog's path)."""
    if not isinstance(doc, dict) or doc.get("format") != SUMMARY_FORMAT or doc.get("key") != key:
        return None
    try:
        if _str(doc["path"]) != str(file):
            return None
        code = doc["code"]
        sources = [(_str(name), _str(relative)) for name, relative in code["sources"]]
        if any(
            not relative or Path(relative).is_absolute() or ".." in Path(relative).parts
            for _, relative in sources
        ):  # hashed from under the package only
            return None
        if (fingerprint or fingerprint_of(sources, package_root())) != _str(code["fingerprint"]):
            return None  # drillbook's catalogue code changed since
        for path, stamp in doc["inputs"]:
            if _stamp(_str(path)) != stamp:
                return None  # a reference or suite changed: its verdict is the full load's to give
        d = doc["defaults"]
        retries, retry_delay = d["retries"], d["retry_delay"]
        if type(retries) is not int or type(retry_delay) not in (int, float):
            return None
        schedules = d["digest_schedules"]
        if not isinstance(schedules, list):
            return None
        return CatalogueSummary(
            path=file,
            defaults=DefaultsSummary(
                timezone=_str(d["timezone"]),
                owner=_str(d["owner"]),
                retries=retries,
                retry_delay=float(retry_delay),
                watchdog=WatchdogSummary(schedule=_str(d["watchdog_schedule"])),
                digest=DigestSummary(schedules=tuple(_str(s) for s in schedules)),
            ),
        )
    except (KeyError, TypeError, ValueError, OSError):
        return None


def _only_builtin_kinds() -> bool:
    """No kind registered beyond the built-in ones; a process that never imported the registry registered none."""
    registry = sys.modules.get("drillbook.drills.registry")
    return registry is None or bool(registry.only_builtin())


def summary_stands(directory: Path, file: Path, raw: bytes, gx_suites: bool) -> bool:
    """Whether a summary stands for this file: its checks passed on files unchanged since, with this code."""
    if gx_suites or not _only_builtin_kinds():
        return False
    key = summary_key(file, raw)
    doc = read_private(directory / f"summary-{key}.json", MAX_SUMMARY_BYTES)
    return _summary_from(doc, file, key, fingerprint=code_fingerprint()) is not None


def read_summary(
    path: str | os.PathLike[str] | None = None,
    *,
    gx_suites: bool = False,
    cache_root: str | os.PathLike[str] | None = None,
) -> CatalogueSummary | None:
    """The summary of the catalogue at ``path`` written after a load whose checks passed, if nothing it stands for
    changed since; None sends the caller to ``load_compiled_catalogue`` (which reports any problem).

    Imports neither the catalogue's models nor the loader."""
    if gx_suites or not _only_builtin_kinds():
        return None
    file = resolve_catalogue_path(path)
    try:
        with open(file, "rb") as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)
    except OSError:
        return None
    if len(raw) > MAX_YAML_BYTES:
        return None
    directory = private_dir(cache_dir(cache_root), create=False)
    if directory is None:
        return None
    key = summary_key(file, raw)
    return _summary_from(read_private(directory / f"summary-{key}.json", MAX_SUMMARY_BYTES), file, key)
