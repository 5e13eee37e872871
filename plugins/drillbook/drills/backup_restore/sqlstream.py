"""Feed a stream through the statement filter: whole SQL lines, COPY rows in blocks, output in pipe-sized writes.

Rules this module enforces (with sqlfilter.py, which judges what this reads):
- SQL is read a whole line at a time (up to ``MAX_STATEMENT``: a statement is
  held whole anyway), so no quote, dollar tag or comment is ever split between
  two reads;
- COPY rows are judged a block of whole lines at a time (about ``BLOCK``
  bytes); a block holding a backslash pg_dump would not write, or the end
  marker, goes back to the line-by-line path, which names the exact line;
  a line longer than a block passes in pieces of ``PIECE`` bytes;
- only judged bytes are ever written, batched into writes of about ``PIECE``
  bytes; after the first refusal nothing more is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import BinaryIO

from drillbook.drills.backup_restore.sqlfilter import PIECE, StatementFilter
from drillbook.drills.backup_restore.sqlscan import MAX_STATEMENT

# after removing "\\\\" pairs, a backslash followed by anything pg_dump does not write
_BAD_DATA_ESCAPE = re.compile(rb"\\[^Ntnrbfvx0-7]", re.S)
BLOCK = 1 << 20  # bytes of COPY rows judged at once


class _Reader:
    """readline() and whole-line blocks over a stream, with bytes pushed back after a block."""

    def __init__(self, src: BinaryIO):
        self.src = src
        self.buf = b""

    def readline(self, limit: int) -> bytes:
        if not self.buf:
            return self.src.readline(limit)
        j = self.buf.find(b"\n", 0, limit)
        if j >= 0 or len(self.buf) >= limit:
            cut = j + 1 if j >= 0 else limit
            piece, self.buf = self.buf[:cut], self.buf[cut:]
            return piece
        piece, self.buf = self.buf, b""
        return piece + self.src.readline(limit - len(piece))

    def block(self) -> bytes:
        """Whole lines, about BLOCK bytes (empty at the end or when no newline comes within BLOCK)."""
        data = self.buf + self.src.read(max(0, BLOCK - len(self.buf)))
        nl = data.rfind(b"\n")
        self.buf = data[nl + 1 :]
        return data[: nl + 1]


def _copy_block(flt: StatementFilter, reader: _Reader) -> bytes | int | None:
    """Fast path for COPY rows at a line start: judge a block of whole rows at once.

    Returns the rows passed, b"" at the end of input, None when the line-by-line path
    must take the next line (the end marker, a long line), or the number of bytes it
    must take (a backslash that needs a closer look).
    """
    data = reader.block()
    if not data:
        return None if reader.buf else b""
    end = (
        0
        if data.startswith((b"\\.\n", b"\\.\r\n"))
        else min((i + 1 for i in (data.find(b"\n\\.\n"), data.find(b"\n\\.\r\n")) if i >= 0), default=-1)
    )
    if end >= 0:
        reader.buf = data[end:] + reader.buf
        data = data[:end]
    if b"\0" in data or (b"\\" in data and _BAD_DATA_ESCAPE.search(data.replace(b"\\\\", b""))):
        reader.buf = data + reader.buf  # let the line-by-line path find and name the line
        return len(data)
    flt.line += data.count(b"\n")
    return data if data else None


def filter_stream(src: BinaryIO, write: Callable[[bytes], object], flt: StatementFilter) -> None:
    """Copy ``src`` to ``write`` through ``flt`` until the end or the first refusal.

    Judged output is batched into writes of about ``PIECE`` bytes (one pipe write per
    COPY row would cost more than the judging); nothing unjudged is ever in a batch.
    COPY rows are judged a block of whole lines at a time (``_copy_block``), everything
    else line by line.
    """
    reader = _Reader(src)
    batch: list[bytes] = []
    held = 0
    slow = 0  # bytes the line-by-line path must take before the fast path may try again
    while True:
        if (
            slow <= 0
            and flt.copy
            and flt.copy_line_start
            and not flt.copy_backslash
            and (flt.refusal is None or flt.collect)
        ):
            rows = _copy_block(flt, reader)
            if rows == b"":
                break
            if isinstance(rows, int):
                slow = rows
            elif rows is not None:
                batch.append(rows)
                held += len(rows)
                if held >= PIECE:
                    write(b"".join(batch))
                    batch, held = [], 0
                continue
        # SQL is read a whole line at a time (a statement is held whole anyway, up to
        # MAX_STATEMENT), so no quote, tag or comment is ever split; COPY rows in pieces.
        piece = reader.readline(PIECE if flt.copy else MAX_STATEMENT + 1)
        if not piece:
            break
        slow -= len(piece)
        out = flt.feed(piece)
        if out:
            batch.append(out)
            held += len(out)
        if flt.refusal is not None and not flt.collect:
            break
        if held >= PIECE:
            write(b"".join(batch))
            batch, held = [], 0
    if flt.refusal is None or flt.collect:
        tail = flt.finish()
        if tail:
            batch.append(tail)
    if batch:
        write(b"".join(batch))
