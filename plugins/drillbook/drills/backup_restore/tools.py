"""Find the PostgreSQL client tools (pg_restore, psql, pg_dump) that match an archive.

Rule: a restore uses a tool whose major version is at least the major version
of the pg_dump that wrote the archive (older tools refuse newer archives or
mis-read them); among those the exact major wins, then the oldest newer one.
A configured ``bin_dir`` is the only place looked at when it is given (an
explicit choice is never second-guessed); otherwise PATH,
``/usr/lib/postgresql/*/bin`` and the bin directory of the ``pgserver``
package are searched. No tool that fits -> ``VERSION_MISMATCH``.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Tool:
    name: str
    path: str
    major: int
    version: str


@functools.lru_cache(maxsize=64)
def tool_version(path: str) -> tuple[int, str] | None:
    """(major, "16.2") of a PostgreSQL client binary, or None when it does not run."""
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=15, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = _VERSION_RE.search(out)
    if not m:
        return None
    version = m.group(1) + (f".{m.group(2)}" if m.group(2) else "")
    return int(m.group(1)), version


def _pgserver_bin() -> str | None:
    try:
        from pgserver._commands import POSTGRES_BIN_PATH
    except Exception:
        return None
    return str(POSTGRES_BIN_PATH)


def iter_candidate_dirs(bin_dir: str | None = None) -> Iterator[str]:
    """Directories searched for client tools, in order (see the module docstring), found as they are reached:
    pgserver's is looked up last and only when asked for (importing the package costs about 0.2 s)."""
    if bin_dir:
        yield bin_dir
        return
    yield from (p for p in os.environ.get("PATH", "").split(os.pathsep) if p)
    yield from sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    extra = _pgserver_bin()
    if extra:
        yield extra


def candidate_dirs(bin_dir: str | None = None) -> list[str]:
    """Directories searched for client tools, in order (see the module docstring)."""
    return list(iter_candidate_dirs(bin_dir))


def iter_available(name: str, *, bin_dir: str | None = None) -> Iterator[Tool]:
    """Every distinct runnable ``name`` binary in the candidate directories, in order, each run (``--version``)
    only when the caller asks for the next: a caller that stops at the first fit runs no more."""
    seen: set[str] = set()
    for directory in iter_candidate_dirs(bin_dir):
        path = shutil.which(name, path=directory)
        if not path:
            continue
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        found = tool_version(path)
        if found:
            yield Tool(name=name, path=path, major=found[0], version=found[1])


def available(name: str, *, bin_dir: str | None = None) -> list[Tool]:
    """Every distinct runnable ``name`` binary in the candidate directories."""
    return list(iter_available(name, bin_dir=bin_dir))


def choose(name: str, *, min_major: int | None, bin_dir: str | None = None) -> tuple[Tool | None, list[Tool]]:
    """The tool to use for an archive written by pg_dump ``min_major`` (None: newest), and all seen."""
    tools = available(name, bin_dir=bin_dir)
    if not tools:
        return None, tools
    if min_major is None:
        return max(tools, key=lambda t: t.major), tools
    fitting = [t for t in tools if t.major >= min_major]
    if not fitting:
        return None, tools
    exact = [t for t in fitting if t.major == min_major]
    return (exact[0] if exact else min(fitting, key=lambda t: t.major)), tools


def describe(tools: list[Tool]) -> str:
    return ", ".join(f"{t.name} {t.version} ({Path(t.path).parent})" for t in tools) or "none found"
