"""Read an evidence pack's members as untrusted input: never extracted, every read bounded.

Rules this module enforces:
- ``manifest.json`` is read only up to ``MAX_MANIFEST`` bytes, and every other
  member only up to the size the manifest gives it (plus one byte to notice a
  longer one), so a zip bomb costs no more than the manifest admits; a member
  parsed whole as JSON is bounded by ``MAX_JSON`` whatever the manifest claims.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO, Any

MAX_MANIFEST = 1 << 20
MAX_SIGNATURE = 1024
MAX_JSON = 256 << 20  # a JSON member is parsed whole: bounded whatever a forged manifest claims
#: what reading a damaged member raises (a flipped byte in the compressed data, a bad CRC, a cut file)
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError)


def _read(zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    limit = min(limit, MAX_JSON)
    with zf.open(name) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{name} is larger than {limit} bytes")
    return data


def _stream(zf: zipfile.ZipFile, name: str, limit: int) -> Iterator[bytes]:
    """The member's bytes in chunks, stopping one byte past ``limit``."""
    left = limit + 1
    with zf.open(name) as fh:
        while left > 0:
            chunk = fh.read(min(1 << 16, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def _lines(zf: zipfile.ZipFile, name: str, limit: int) -> IO[str]:
    raw = zf.open(name)
    return io.TextIOWrapper(io.BufferedReader(_Capped(raw, limit)), encoding="utf-8", newline="")


class _Capped(io.RawIOBase):
    def __init__(self, inner: Any, limit: int):
        self.inner, self.left = inner, limit + 1

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            return 0
        data = self.inner.read(min(len(buffer), self.left))
        self.left -= len(data)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()
