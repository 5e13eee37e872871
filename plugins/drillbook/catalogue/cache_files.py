"""Keep the catalogue cache's files private: nothing another user could have written is read.

Rules this module enforces:

- the directory is ``cache_root`` (the entry point passes setting ``DRILLBOOK_CACHE_DIR``) or ``$XDG_CACHE_HOME/drillbook`` or
  ``~/.cache/drillbook``, subdirectory ``catalogue``, created 0700; a directory or
  file owned by another user, writable by group or others, a symlink, larger than
  the catalogue bound or not the expected JSON is ignored (never trusted, never an
  error): the catalogue is then loaded from its file as if there were no cache;
- writing is best effort and atomic (a temporary file renamed into place); at most
  ``MAX_ENTRIES`` entries are kept.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

MAX_ENTRIES = 32


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where compiled catalogues are kept for this user: under ``explicit`` (the entry point's setting
    ``DRILLBOOK_CACHE_DIR``), else the platform's cache directory."""
    if explicit:
        return Path(explicit) / "catalogue"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "drillbook" / "catalogue"


def private_dir(directory: Path, create: bool) -> Path | None:
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


def read_private(file: Path, max_bytes: int) -> Any:
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


def write_private(directory: Path, name: str, text: str) -> None:
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
