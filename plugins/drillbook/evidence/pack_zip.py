"""Stream an evidence pack's members into the zip, each hashed and sized as it is written.

Rules this module enforces:
- every member goes through ``_Zip``, which records its sha256 and byte count for the manifest as
  the bytes pass: nothing is read back, and no member is held whole in memory;
- every member gets the pack's creation time as its zip timestamp, deflated, zip64 allowed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime
from typing import IO, Any

from drillbook.evidence.pack_format import POPULATION_HEADER


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes, counts and keeps the last writes (they hold the export's final row)."""

    def __init__(self, inner: IO[bytes]):
        self.inner, self.sha, self.size, self.tail, self.last = inner, hashlib.sha256(), 0, b"", b""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.inner.write(chunk)
        self.sha.update(chunk)
        self.size += len(chunk)
        # COPY hands over one row per chunk: keep the last two writes, not a sliding copy of 64 KB per row
        self.tail = self.last + chunk if len(chunk) < 65536 else chunk
        self.last = chunk
        return len(chunk)


class _Zip:
    def __init__(self, zf: zipfile.ZipFile, stamp: datetime):
        self.zf, self.date_time = zf, stamp.astimezone(UTC).timetuple()[:6]
        self.hashes: dict[str, dict[str, Any]] = {}

    def open(self, name: str) -> tuple[Any, _Hashing]:
        info = zipfile.ZipInfo(name, date_time=self.date_time)  # type: ignore[arg-type]
        info.compress_type = zipfile.ZIP_DEFLATED
        raw = self.zf.open(info, "w", force_zip64=True)
        return raw, _Hashing(raw)

    def close(self, name: str, raw: Any, out: _Hashing) -> None:
        raw.close()
        self.hashes[name] = {"sha256": out.sha.hexdigest(), "bytes": out.size}

    def put(self, name: str, data: bytes) -> None:
        raw, out = self.open(name)
        out.write(data)
        self.close(name, raw, out)


def _head_of(tail: bytes) -> tuple[int | None, str | None]:
    lines = [line.strip().rstrip(b",") for line in tail.splitlines() if line.strip() not in (b"", b"[", b"]")]
    if not lines:
        return None, None
    last = json.loads(lines[-1])
    return int(last["seq"]), str(last["hash"])


def _json(doc: Any) -> bytes:
    # no indent: the C encoder (indent falls back to pure Python, 10x slower on a year's exceptions)
    return (json.dumps(doc, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _copy_population(spill: IO[str], pack: _Zip, chosen: set[int]) -> list[dict[str, str]]:
    """Copy the spilled population into the zip; return the sampled rows."""
    spill.seek(0)
    raw, out = pack.open("population.csv")
    sampled: list[dict[str, str]] = []
    for number, line in enumerate(spill):
        out.write(line.encode())
        if number and number in chosen:
            sampled.append(dict(zip(POPULATION_HEADER, next(csv.reader([line])), strict=True)))
    pack.close("population.csv", raw, out)
    return sampled
