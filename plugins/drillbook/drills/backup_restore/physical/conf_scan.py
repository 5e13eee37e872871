"""Read the settings a restored cluster's configuration files give, in-process, or say that it cannot.

Why: the pre-start safety read (cluster_safety.py) asked the server binary, ``postgres -C``, once per setting (it
takes one name): fourteen processes, 0.1-0.2 s of a drill on 2 cores, more under load. Most restored
``postgresql.auto.conf`` files are a few ``name = 'value'`` lines written by the backup tool, which this
module reads in well under a millisecond.

Rules this module enforces:
- only a strict subset of PostgreSQL's configuration syntax is read: ASCII lines
  ``name [=] value [# comment]``, the value a single-quoted string without
  backslashes (``''`` is the only escape) or one unquoted word. Anything else
  (an ``include*`` directive, a backslash, a non-ASCII byte, a carriage return,
  a symlinked or oversized file, a line PostgreSQL might read differently)
  answers ``None``, and the caller asks the server binary (``postgres -C``)
  exactly as before. Names are case-insensitive, the last line wins, as in
  PostgreSQL;
- the answer may only spare the server binary, never decide what the server
  runs with: every setting the pre-start check reads is also forced on the
  server's command line (cluster_safety.py ``forced_safe_args``), which outranks
  every file, and after start, before anything else, ``pg_file_settings``
  (PostgreSQL's own parse of the same files) must give exactly what this scan
  read, else ``SCRATCH_UNSAFE`` and the server is stopped. A scan fooled into
  "safe" therefore costs the refusal *before* start, never the safety: the
  server it let start archives nothing, replicates nothing and recovers to
  the drill's own target.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

#: a restored postgresql.auto.conf is a few hundred bytes; anything this large is read by the server binary
MAX_BYTES = 256 * 1024
_NAME = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?"
_LINE_RE = re.compile(
    rf"^[ \t]*(?P<name>{_NAME})[ \t]*=?[ \t]*"
    r"(?:'(?P<quoted>(?:[^'\\\n]|'')*)'|(?P<word>-?[A-Za-z0-9_][A-Za-z0-9_.:/-]*))"
    r"[ \t]*(?:#[^\n]*)?$"
)
_BLANK_RE = re.compile(r"^[ \t]*(?:#[^\n]*)?$")
_INCLUDES = frozenset({"include", "include_dir", "include_if_exists"})


def _read_bounded(path: Path) -> bytes | None:
    """A regular file's bytes, at most ``MAX_BYTES`` (b"" when missing); None for a symlink, FIFO, larger file or error."""
    try:
        # O_NONBLOCK: a FIFO planted under the name would otherwise block the open forever
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return b""
    except OSError:
        return None  # a symlink (ELOOP), a permission problem
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        raw = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    return raw if len(raw) <= MAX_BYTES else None


def scan_file(path: Path) -> list[tuple[str, str]] | None:
    """``(lower-cased name, value)`` of every setting line of ``path`` in order; ``None`` when not strictly readable.

    A missing file is an empty list (PostgreSQL skips a missing postgresql.auto.conf too).
    """
    raw = _read_bounded(path)  # None: a symlink, FIFO, oversized file: the server binary decides
    if raw is None or any(b > 0x7E or (b < 0x20 and b not in (0x09, 0x0A)) for b in raw):
        return None  # non-ASCII, NUL, CR and other control bytes: not ours to interpret
    return scan_text(raw.decode("ascii"))


_QUOTED_LINE_RE = re.compile(
    rf"^[ \t]*(?P<name>{_NAME})[ \t]*=?[ \t]*'(?P<value>(?:[^'\n]|'')*)'[ \t]*(?:#.*)?$"
)


def quoted_settings(path: Path) -> dict[str, str] | None:
    """Every ``name = 'value'`` line a restore tool wrote into ``path`` (names lower-cased, the last line wins).

    Lenient where ``scan_file`` is strict: other lines are skipped, not refused. For values the caller then
    checks exactly and pins on the server's command line (the restore_command: pgbackrest.py, barman_recover.py), so
    a line PostgreSQL would read differently changes nothing the server runs. Read like ``scan_file`` (no
    symlink, no FIFO, at most ``MAX_BYTES``): ``None`` when it cannot be; a missing file is ``{}``.
    """
    raw = _read_bounded(path)
    if raw is None:
        return None
    values: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        m = _QUOTED_LINE_RE.match(line)
        if m is not None:
            values[m.group("name").lower()] = m.group("value").replace("''", "'")
    return values


def scan_text(text: str) -> list[tuple[str, str]] | None:
    """As ``scan_file``, on a file's text."""
    out: list[tuple[str, str]] = []
    for line in text.split("\n"):
        if _BLANK_RE.match(line):
            continue
        m = _LINE_RE.match(line)
        if m is None:
            return None
        name = m.group("name").lower()
        if name in _INCLUDES:
            return None
        quoted = m.group("quoted")
        out.append((name, quoted.replace("''", "'") if quoted is not None else m.group("word")))
    return out


def file_values(paths: Iterable[Path], names: Iterable[str]) -> dict[str, str] | None:
    """The value of each of ``names`` the files give (read in order, the last line wins; a name no file sets is
    absent), or ``None`` when any file is not strictly readable."""
    wanted = set(names)
    values: dict[str, str] = {}
    for path in paths:
        lines = scan_file(path)
        if lines is None:
            return None
        values.update((k, v) for k, v in lines if k in wanted)
    return values
