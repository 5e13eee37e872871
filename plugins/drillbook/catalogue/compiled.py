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
  changed since) unless the summary below stands for the file, i.e. none of the files
  they read changed since they last passed; only the YAML parse and the duplicate-key
  walk, which depend on the bytes alone, are skipped. Only a catalogue that loaded without problems is
  written, so every error is still reported by ``load_catalogue`` with its line;
- the directory is ``cache_root`` (the entry point passes setting ``DRILLBOOK_CACHE_DIR``) or ``$XDG_CACHE_HOME/drillbook`` or
  ``~/.cache/drillbook``, subdirectory ``catalogue``, created 0700; a directory or
  file owned by another user, writable by group or others, a symlink, larger than
  the catalogue bound or not the expected JSON is ignored (never trusted, never an
  error): the catalogue is then loaded from its file as if there were no cache;
- writing is best effort and atomic (a temporary file renamed into place); at most
  ``MAX_ENTRIES`` entries are kept.

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

import functools
import hashlib
import importlib
import json
import os
import stat
import sys
import tempfile
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

# only what the summary's reader needs at module level: the watchdog's DAG file imports this module without the
# catalogue's models, the loader or PyYAML's parse
from drillbook.catalogue.names import MAX_YAML_BYTES, resolve_catalogue_path

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue

FORMAT = 1
SUMMARY_FORMAT = 1
MAX_ENTRIES = 32
MAX_SUMMARY_BYTES = 1024 * 1024
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


def _package_root() -> Path:
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
    root = _package_root()
    out: list[tuple[str, str]] = []
    for name in sorted(modules):
        module = sys.modules.get(name) or importlib.import_module(name)
        source = getattr(module, "__file__", None)
        try:
            out.append((name, Path(source).resolve().relative_to(root).as_posix() if source else ""))
        except ValueError:
            out.append((name, ""))
    return out


def _fingerprint_of(sources: list[tuple[str, str]], root: Path) -> str:
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
def _sources() -> tuple[tuple[str, str], ...]:
    return tuple(_fingerprint_sources())


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 over drillbook's version and the source of the modules that define or check a catalogue."""
    return _fingerprint_of(list(_sources()), _package_root())


def cache_key(data: bytes) -> str:
    return hashlib.sha256(code_fingerprint().encode() + b"\0" + data).hexdigest()


def _read_private(file: Path, max_bytes: int) -> Any:
    """The JSON document in ``file`` if it is ours (owner, mode, a regular file, not a symlink); None otherwise."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if (
            not stat.S_ISREG(info.st_mode)
            or info.st_uid != os.geteuid()
            or info.st_mode & 0o022
            or info.st_size > max_bytes
        ):
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(max_bytes + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _read_entry(directory: Path, key: str) -> Any:
    """The cached data for ``key``, or None when there is none we may trust to be ours and well formed."""
    entry = _read_private(directory / f"{key}.json", 4 * MAX_YAML_BYTES)
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
    _write_private(directory, f"{key}.json", text)


def _write_private(directory: Path, name: str, text: str) -> None:
    """Best effort and atomic; keeps the newest ``MAX_ENTRIES`` entries and as many summaries."""
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, directory / name)
        for pattern in ("[0-9a-f]*.json", "summary-*.json"):
            entries = sorted(directory.glob(pattern), key=lambda p: p.stat().st_mtime)
            for old in entries[:-MAX_ENTRIES]:
                old.unlink(missing_ok=True)
    except OSError:
        return


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
    stamps = _input_stamps(catalogue)
    if run_checks(catalogue):
        return None  # a reference or suite changed: the full load reports it with its line
    return catalogue, stamps


# -- the summary: what the watchdog's DAG file needs, answered without the models ------------------------------
def _stamp(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return [st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _input_stamps(catalogue: Catalogue) -> dict[str, Any] | None:
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
    fingerprint, sources = code_fingerprint(), _sources()
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


def _write_summary(
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
    if _read_private(directory / name, MAX_SUMMARY_BYTES) == json.loads(text):
        return  # the DAG processor re-parses every file every 30 s: write only what changed
    _write_private(directory, name, text)


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
        if (fingerprint or _fingerprint_of(sources, _package_root())) != _str(code["fingerprint"]):
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


def _summary_stands(directory: Path, file: Path, raw: bytes, gx_suites: bool) -> bool:
    """Whether a summary stands for this file: its checks passed on files unchanged since, with this code."""
    if gx_suites or not _only_builtin_kinds():
        return False
    key = summary_key(file, raw)
    doc = _read_private(directory / f"summary-{key}.json", MAX_SUMMARY_BYTES)
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
    directory = _private_dir(cache_dir(cache_root), create=False)
    if directory is None:
        return None
    key = summary_key(file, raw)
    return _summary_from(_read_private(directory / f"summary-{key}.json", MAX_SUMMARY_BYTES), file, key)


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
    directory = _private_dir(cache_dir(cache_root), create=use_disk) if use_disk else None
    found = None
    if directory is not None:
        data = _read_entry(directory, key)
        if data is not None:
            found = _from_cache(
                data, file, gx_suites, checked=_summary_stands(directory, file, raw, gx_suites)
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
            stamps = _input_stamps(catalogue)
            if stamps is not None and run_checks(catalogue):
                stamps = None
    if directory is not None:
        _write_summary(directory, catalogue, file, raw, stamps)
    _MEMO[memo_key] = catalogue
    return catalogue
