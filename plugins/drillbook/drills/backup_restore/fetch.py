"""Phase 2, fetch and check: bring the artefact to the work directory intact, or say it is not.

Rules this module enforces:
- an S3 object is streamed to disk in 1 MiB chunks and hashed on the way; it is
  never held whole in memory; a local file is read where it lies (no copy);
- the expected digest comes from a ``<key>.sha256`` sidecar, else the object's
  ``x-amz-meta-sha256`` metadata; a size or digest that differs ->
  ``FETCH_FAILED`` (the drill stops: an artefact that is not what was written
  proves nothing); no digest anywhere -> ``ARTEFACT_UNVERIFIED`` (low);
- a transfer that breaks (endpoint gone, body cut mid-stream, S3 error) raises
  ``FetchBroken`` -> ``FETCH_FAILED``, never a crash;
- a download is written under a temporary name in the work directory and
  renamed only once complete; a failed download leaves nothing behind;
- a directory-format dump on S3 (a prefix holding ``toc.dat``) is one artefact:
  every member object is streamed into a local directory, each checked against
  the listed size and its ``x-amz-meta-sha256`` when it has one.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drillbook.drills.backup_restore.locate import CHUNK, Artefact
from drillbook.errors import DrillbookError

_HEX_RE = re.compile(r"\b([0-9a-fA-F]{64})\b")
SIDECAR_MAX = 4096  # a sidecar is one line; never read more than this


class FetchBroken(DrillbookError):
    """The transfer of an artefact broke before it was complete (becomes ``FETCH_FAILED``)."""


def transfer_errors() -> tuple[type[BaseException], ...]:
    """What a broken S3 transfer raises: botocore's errors (connection, cut body, timeout), S3 errors, OS errors."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError, OSError)


@dataclass
class FetchOutcome:
    path: Path
    size: int
    sha256: str | None  # computed; None when nothing to compare against (local, no sidecar)
    expected_sha256: str | None
    digest_source: str | None  # "sidecar", "metadata" or None
    expected_size: int | None = None

    @property
    def size_ok(self) -> bool:
        return self.expected_size is None or self.expected_size == self.size

    @property
    def digest_ok(self) -> bool | None:
        if self.expected_sha256 is None:
            return None
        return self.sha256 == self.expected_sha256


def parse_sidecar(text: str) -> str | None:
    """The hex digest in a ``sha256sum``-style line, or None."""
    m = _HEX_RE.search(text)
    return m.group(1).lower() if m else None


def _s3_sidecar(s3_client: Any, bucket: str, key: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        obj = s3_client.get_object(Bucket=bucket, Key=key + ".sha256")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
            return None
        raise
    body = obj["Body"]
    try:
        return parse_sidecar(body.read(SIDECAR_MAX).decode("utf-8", "replace"))
    finally:
        body.close()


def _stream_to(body: Any, target: Path) -> tuple[str, int]:
    """Write a streaming body to ``target`` in chunks; (sha256 hex, bytes written)."""
    digest = hashlib.sha256()
    size = 0
    try:
        with target.open("wb") as fh:
            for chunk in body.iter_chunks(CHUNK):
                digest.update(chunk)
                fh.write(chunk)
                size += len(chunk)
    finally:
        body.close()
    return digest.hexdigest(), size


def _part_name(work_dir: Path, name: str) -> Path:
    return work_dir / f".{name}.part-{uuid.uuid4().hex[:8]}"


def _discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


@contextlib.contextmanager
def _partial(part: Path, uri: str) -> Iterator[None]:
    """Remove the partial download ``part`` unless the block completes; a broken transfer is FetchBroken."""
    try:
        yield
    except transfer_errors() as exc:
        _discard(part)
        raise FetchBroken(
            f"{uri}: the download broke after a partial transfer: {type(exc).__name__}: {exc}"
        ) from None
    except BaseException:
        _discard(part)
        raise


def fetch_s3(artefact: Artefact, *, s3_client: Any, work_dir: Path) -> FetchOutcome:
    """Stream ``artefact`` to ``work_dir`` while hashing it; a broken transfer raises ``FetchBroken``."""
    assert artefact.bucket and artefact.key
    if artefact.members:
        return _fetch_s3_directory(artefact, s3_client=s3_client, work_dir=work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    part = _part_name(work_dir, artefact.name)
    with _partial(part, artefact.uri):
        expected = _s3_sidecar(s3_client, artefact.bucket, artefact.key)
        source = "sidecar" if expected else None
        obj = s3_client.get_object(Bucket=artefact.bucket, Key=artefact.key)
        metadata = {k.lower(): v for k, v in (obj.get("Metadata") or {}).items()}
        artefact.metadata = metadata
        if expected is None and metadata.get("sha256"):
            expected = parse_sidecar(metadata["sha256"])
            source = "metadata" if expected else None
        sha256, size = _stream_to(obj["Body"], part)
    target = work_dir / artefact.name
    part.replace(target)
    artefact.path = target
    expected_size = artefact.size if artefact.size is not None else obj.get("ContentLength")
    return FetchOutcome(
        path=target,
        size=size,
        sha256=sha256,
        expected_sha256=expected,
        digest_source=source,
        expected_size=expected_size,
    )


def _fetch_s3_directory(artefact: Artefact, *, s3_client: Any, work_dir: Path) -> FetchOutcome:
    """Stream every member of a directory-format dump into one local directory, renamed when complete."""
    assert artefact.bucket
    work_dir.mkdir(parents=True, exist_ok=True)
    part = _part_name(work_dir, artefact.name)
    part.mkdir()
    lines: list[str] = []
    expected_lines: list[str] = []
    all_have_digest = True
    total = 0
    with _partial(part, artefact.uri):
        for key, listed_size in artefact.members:
            member = key.rsplit("/", 1)[-1]
            obj = s3_client.get_object(Bucket=artefact.bucket, Key=key)
            sha256, size = _stream_to(obj["Body"], part / member)
            if size != listed_size:
                raise FetchBroken(
                    f"{artefact.uri}: member {member!r}: got {size} bytes, the store lists {listed_size}"
                )
            total += size
            meta = {k.lower(): v for k, v in (obj.get("Metadata") or {}).items()}
            want = parse_sidecar(meta.get("sha256", ""))
            all_have_digest = all_have_digest and want is not None
            lines.append(f"{member} {sha256}")
            expected_lines.append(f"{member} {want}")
    target = work_dir / artefact.name
    _discard(target)
    part.replace(target)
    artefact.path = target

    def combined(rows: list[str]) -> str:
        return hashlib.sha256("\n".join(rows).encode()).hexdigest()

    return FetchOutcome(
        path=target,
        size=total,
        sha256=combined(lines),
        expected_sha256=combined(expected_lines) if all_have_digest else None,
        digest_source="metadata" if all_have_digest else None,
        expected_size=artefact.size,
    )


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def check_local(artefact: Artefact) -> FetchOutcome:
    """Hash a local artefact against its sidecar; a file without a sidecar is not hashed (nothing to compare)."""
    path = artefact.path
    assert path is not None
    sidecar = Path(str(path) + ".sha256")
    if path.is_dir():
        return FetchOutcome(
            path=path, size=artefact.size or 0, sha256=None, expected_sha256=None, digest_source=None
        )
    expected = None
    if sidecar.is_file():
        with sidecar.open("r", encoding="utf-8", errors="replace") as fh:
            expected = parse_sidecar(fh.read(SIDECAR_MAX))
    if expected is None:
        return FetchOutcome(
            path=path, size=path.stat().st_size, sha256=None, expected_sha256=None, digest_source=None
        )
    actual, size = sha256_file(path)
    return FetchOutcome(
        path=path, size=size, sha256=actual, expected_sha256=expected, digest_source="sidecar"
    )
