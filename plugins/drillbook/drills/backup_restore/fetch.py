"""Phase 2, fetch and check: bring the artefact to the work directory intact, or say it is not.

Rules this module enforces:
- an S3 object is streamed to disk in 1 MiB chunks and hashed on the way; it is
  never held whole in memory; a local file is read where it lies (no copy);
- the expected digest comes from a ``<key>.sha256`` sidecar, else the object's
  ``x-amz-meta-sha256`` metadata; a size or digest that differs ->
  ``FETCH_FAILED`` (the drill stops: an artefact that is not what was written
  proves nothing); no digest anywhere -> ``ARTEFACT_UNVERIFIED`` (low).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drillbook.drills.backup_restore.locate import CHUNK, Artefact

_HEX_RE = re.compile(r"\b([0-9a-fA-F]{64})\b")
SIDECAR_MAX = 4096  # a sidecar is one line; never read more than this


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


def fetch_s3(artefact: Artefact, *, s3_client: Any, work_dir: Path) -> FetchOutcome:
    """Stream ``artefact`` to ``work_dir`` while hashing it."""
    assert artefact.bucket and artefact.key
    expected = _s3_sidecar(s3_client, artefact.bucket, artefact.key)
    source = "sidecar" if expected else None
    obj = s3_client.get_object(Bucket=artefact.bucket, Key=artefact.key)
    metadata = {k.lower(): v for k, v in (obj.get("Metadata") or {}).items()}
    artefact.metadata = metadata
    if expected is None and metadata.get("sha256"):
        expected = parse_sidecar(metadata["sha256"])
        source = "metadata" if expected else None
    work_dir.mkdir(parents=True, exist_ok=True)
    target = work_dir / artefact.name
    digest = hashlib.sha256()
    size = 0
    body = obj["Body"]
    try:
        with target.open("wb") as fh:
            for chunk in body.iter_chunks(CHUNK):
                digest.update(chunk)
                fh.write(chunk)
                size += len(chunk)
    finally:
        body.close()
    artefact.path = target
    expected_size = artefact.size if artefact.size is not None else obj.get("ContentLength")
    return FetchOutcome(path=target, size=size, sha256=digest.hexdigest(), expected_sha256=expected,
                        digest_source=source, expected_size=expected_size)


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
        return FetchOutcome(path=path, size=artefact.size or 0, sha256=None, expected_sha256=None, digest_source=None)
    expected = None
    if sidecar.is_file():
        with sidecar.open("r", encoding="utf-8", errors="replace") as fh:
            expected = parse_sidecar(fh.read(SIDECAR_MAX))
    if expected is None:
        return FetchOutcome(path=path, size=path.stat().st_size, sha256=None, expected_sha256=None, digest_source=None)
    actual, size = sha256_file(path)
    return FetchOutcome(path=path, size=size, sha256=actual, expected_sha256=expected, digest_source="sidecar")
