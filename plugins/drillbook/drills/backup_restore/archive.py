"""Phase 3, inspect: what kind of dump is this, who wrote it, when, and is it whole?

Rules this module enforces:
- the format is read from the bytes, never from the file name: ``PGDMP`` magic
  (custom), a directory with ``toc.dat`` (directory), a ``ustar`` header whose
  first member is ``toc.dat`` (tar), pg_dump's plain-text banner (plain), and
  gzip magic around a plain banner (plain.gz);
- versions and the dump's timestamp come from the archive header (custom,
  directory, tar) or the plain banner; nothing is guessed from the name;
- a plain dump must end with pg_dump's trailer ``-- PostgreSQL database dump
  complete``: psql restores a dump cut off mid-table with exit 0 and no error,
  so the trailer is the only proof it is whole -> else ``ARCHIVE_TRUNCATED``;
  a .gz is decompressed as a stream to find its tail (never whole in memory),
  and a gzip stream that ends early is ``ARCHIVE_TRUNCATED`` too; so is a tar
  whose members run past its end or that lacks pg_dump's last member;
- anything else (empty, random bytes, a header that does not parse) ->
  ``ARCHIVE_UNREADABLE``.
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from drillbook.errors import DrillbookError

MAGIC = b"PGDMP"
GZIP_MAGIC = b"\x1f\x8b"
TRAILER = b"-- PostgreSQL database dump complete"
BANNER = b"-- PostgreSQL database dump"
CLUSTER_BANNER = b"-- PostgreSQL database cluster dump"  # pg_dumpall: roles, tablespaces, every database
TAIL_BYTES = 8192  # the trailer is followed at most by a few \unrestrict lines
_FORMATS = {1: "custom", 3: "tar", 5: "directory"}
_PLAIN_VERSION_RE = re.compile(rb"^-- Dumped (from database|by pg_dump) version (\S+)", re.MULTILINE)
_PLAIN_STARTED_RE = re.compile(rb"^-- Started on (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", re.MULTILINE)


class ArchiveProblem(DrillbookError):
    """The artefact is not a whole, readable dump; ``code`` is the finding to report."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class ArchiveInfo:
    format: str  # custom, directory, tar, plain, plain.gz
    pg_dump_version: str | None = None
    server_version: str | None = None
    archive_version: str | None = None
    created_at: datetime | None = None
    dbname: str | None = None
    compression: str | None = None
    cluster: bool = False  # a pg_dumpall file

    @property
    def dump_major(self) -> int | None:
        if not self.pg_dump_version:
            return None
        m = re.match(r"(\d+)", self.pg_dump_version)
        return int(m.group(1)) if m else None

    def summary(self) -> str:
        parts = [self.format]
        if self.pg_dump_version:
            parts.append(f"pg_dump {self.pg_dump_version}")
        if self.server_version:
            parts.append(f"server {self.server_version}")
        if self.created_at:
            parts.append(f"taken {self.created_at.strftime('%Y-%m-%d %H:%M:%SZ')}")
        return ", ".join(parts)


class _Reader:
    """Reads pg_dump's header encoding: ints are a sign byte plus ``int_size`` little-endian bytes."""

    def __init__(self, fh: BinaryIO):
        self.fh = fh
        self.int_size = 4

    def bytes(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise ArchiveProblem("ARCHIVE_UNREADABLE", "the archive header ends early")
        return data

    def byte(self) -> int:
        return self.bytes(1)[0]

    def int(self) -> int:
        sign = self.byte()
        raw = self.bytes(self.int_size)
        value = int.from_bytes(raw, "little")
        return -value if sign else value

    def str(self) -> str | None:
        length = self.int()
        if length < 0:
            return None
        if length > 4096:
            raise ArchiveProblem(
                "ARCHIVE_UNREADABLE", f"the archive header holds an implausible string length {length}"
            )
        return self.bytes(length).decode("utf-8", "replace")


def parse_header(fh: BinaryIO) -> ArchiveInfo:
    """Parse the header pg_dump writes at the start of custom archives and toc.dat (ReadHead)."""
    if fh.read(5) != MAGIC:
        raise ArchiveProblem("ARCHIVE_UNREADABLE", "no PGDMP magic: not a pg_dump archive")
    r = _Reader(fh)
    vmaj, vmin, vrev = r.byte(), r.byte(), r.byte()
    version = (vmaj, vmin, vrev)
    if vmaj != 1 or vmin > 40:
        raise ArchiveProblem("ARCHIVE_UNREADABLE", f"implausible archive version {vmaj}.{vmin}-{vrev}")
    r.int_size = r.byte()
    if not 1 <= r.int_size <= 8:
        raise ArchiveProblem(
            "ARCHIVE_UNREADABLE", f"implausible integer size {r.int_size} in the archive header"
        )
    if version >= (1, 7, 0):
        r.byte()  # offset size
    fmt = _FORMATS.get(r.byte())
    if fmt is None:
        raise ArchiveProblem("ARCHIVE_UNREADABLE", "unknown archive format byte in the header")
    compression = None
    if version >= (1, 15, 0):
        compression = {0: "none", 1: "gzip", 2: "lz4", 3: "zstd"}.get(r.byte(), "unknown")
    elif version >= (1, 2, 0):
        compression = "gzip" if r.int() != 0 else "none"
    created = None
    if version >= (1, 4, 0):
        sec, minute, hour, mday, mon, year, isdst = (r.int() for _ in range(7))
        try:
            # pg_dump stores local broken-down time; read it the way pg_restore does (mktime).
            stamp = time.mktime((year + 1900, mon + 1, mday, hour, minute, sec, 0, 0, isdst))
            created = datetime.fromtimestamp(stamp, UTC)
        except (OverflowError, ValueError):
            raise ArchiveProblem(
                "ARCHIVE_UNREADABLE", "the archive header holds an invalid timestamp"
            ) from None
    dbname = r.str()
    server = dump = None
    if version >= (1, 10, 0):
        server, dump = r.str(), r.str()
    return ArchiveInfo(
        format=fmt,
        pg_dump_version=dump,
        server_version=server,
        archive_version=f"{vmaj}.{vmin}-{vrev}",
        created_at=created,
        dbname=dbname,
        compression=compression,
    )


def _plain_head(head: bytes, fmt: str) -> ArchiveInfo:
    info = ArchiveInfo(format=fmt, cluster=CLUSTER_BANNER in head[:1024])
    for which, value in _PLAIN_VERSION_RE.findall(head):
        if which == b"from database":
            info.server_version = value.decode("ascii", "replace")
        else:
            info.pg_dump_version = value.decode("ascii", "replace")
    m = _PLAIN_STARTED_RE.search(head)
    if m:
        try:
            info.created_at = datetime.strptime(m.group(1).decode(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        except ValueError:
            pass
    return info


def _check_plain_tail(tail: bytes) -> None:
    if (
        TRAILER not in tail and CLUSTER_BANNER + b" complete" not in tail
    ):  # pg_dumpall --globals-only has only its own
        raise ArchiveProblem(
            "ARCHIVE_TRUNCATED",
            "the plain dump does not end with pg_dump's '-- PostgreSQL database dump complete' trailer: it was cut off",
        )


def inspect_plain_gz(path: Path) -> ArchiveInfo:
    """Stream-decompress a .gz: the head tells the format, the tail must hold the trailer."""
    head = b""
    tail = b""
    try:
        with gzip.open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                if len(head) < TAIL_BYTES:
                    head += chunk[: TAIL_BYTES - len(head)]
                tail = (tail + chunk)[-TAIL_BYTES:]
    except EOFError:
        raise ArchiveProblem(
            "ARCHIVE_TRUNCATED", "the gzip stream ends before its end marker: the file was cut off"
        ) from None
    except (OSError, zlib.error) as exc:
        raise ArchiveProblem("ARCHIVE_UNREADABLE", f"the file is not valid gzip: {exc}") from None
    if head.startswith(MAGIC):
        raise ArchiveProblem(
            "ARCHIVE_UNREADABLE",
            "a gzip-compressed custom archive; pg_restore cannot read it, gunzip it first",
        )
    if BANNER not in head[:1024] and CLUSTER_BANNER not in head[:1024]:
        raise ArchiveProblem("ARCHIVE_UNREADABLE", "the gzip file does not hold a pg_dump plain-text dump")
    _check_plain_tail(tail)
    return _plain_head(head, "plain.gz")


def _check_tar_whole(path: Path) -> None:
    """Every member must end inside the file and pg_dump's last member, restore.sql, must be there.

    Why here: pg_restore 16 spins forever at 100% CPU on a tar cut mid-member,
    so a truncated tar has to be caught before it is restored. Reading the
    member headers seeks past the data: cheap even for a large dump.
    """
    size = path.stat().st_size
    names: list[str] = []
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                names.append(member.name)
                if member.offset_data + member.size > size:
                    raise ArchiveProblem(
                        "ARCHIVE_TRUNCATED",
                        f"tar member {member.name!r} ends past the end of the file: it was cut off",
                    )
    except tarfile.TarError as exc:
        raise ArchiveProblem("ARCHIVE_TRUNCATED", f"the tar archive ends early: {exc}") from None
    if "restore.sql" not in names:
        raise ArchiveProblem(
            "ARCHIVE_TRUNCATED",
            "the tar archive has no restore.sql, the member pg_dump writes last: it was cut off",
        )


def _inspect_tar(path: Path) -> ArchiveInfo:
    _check_tar_whole(path)
    try:
        with tarfile.open(path, mode="r|") as tar:
            member = tar.next()
            if member is None or member.name != "toc.dat":
                raise ArchiveProblem(
                    "ARCHIVE_UNREADABLE", "a tar file whose first member is not pg_dump's toc.dat"
                )
            extracted = tar.extractfile(member)
            if extracted is None:
                raise ArchiveProblem("ARCHIVE_UNREADABLE", "the tar's toc.dat is not a regular file")
            info = parse_header(io.BufferedReader(extracted))  # type: ignore[arg-type,type-var]
            info.format = "tar"
            return info
    except tarfile.TarError as exc:
        raise ArchiveProblem("ARCHIVE_UNREADABLE", f"unreadable tar archive: {exc}") from None


def inspect_archive(path: Path) -> ArchiveInfo:
    """Identify the dump at ``path`` (file or directory) or raise ``ArchiveProblem``."""
    if path.is_dir():
        toc = path / "toc.dat"
        if not toc.is_file():
            raise ArchiveProblem(
                "ARCHIVE_UNREADABLE", f"directory {path.name!r} has no toc.dat: not a directory-format dump"
            )
        with toc.open("rb") as fh:
            info = parse_header(fh)
        info.format = "directory"  # toc.dat of a directory dump carries the tar format byte
        return info
    if not path.is_file():
        raise ArchiveProblem(
            "ARCHIVE_UNREADABLE", f"{path.name!r} is neither a file nor a directory-format dump"
        )
    size = path.stat().st_size
    if size == 0:
        raise ArchiveProblem("ARCHIVE_UNREADABLE", "the file is empty (0 bytes)")
    with path.open("rb") as fh:
        head = fh.read(TAIL_BYTES)
        if head.startswith(MAGIC):
            fh.seek(0)
            return parse_header(fh)
        if head.startswith(GZIP_MAGIC):
            return inspect_plain_gz(path)
        if len(head) > 262 and head[257:262] == b"ustar":
            return _inspect_tar(path)
        if BANNER in head[:1024] or CLUSTER_BANNER in head[:1024]:
            fh.seek(max(0, size - TAIL_BYTES))
            _check_plain_tail(fh.read(TAIL_BYTES))
            return _plain_head(head, "plain")
    raise ArchiveProblem(
        "ARCHIVE_UNREADABLE", "the file is not a pg_dump archive (no PGDMP magic, tar header or plain banner)"
    )
