"""Find and read certificate files: single PEM/DER files, bundles, and directories of them.

Rules this module enforces:
- a path named in the catalogue must exist and hold at least one certificate,
  else it is ``CERT_UNREADABLE`` (ERROR): a mounted secret that vanished must
  not pass silently;
- inside a directory, only files named like certificates (``.pem``, ``.crt``,
  ``.cer``, ``.cert``, ``.der``, or no suffix at all as in secret mounts) are
  read, and those that hold no certificate (private keys) are skipped; hidden entries (Kubernetes' ``..data`` links) are not followed,
  and the walk is bounded (``MAX_FILES``), so a wrong path cannot make the drill
  crawl a whole disk;
- a file larger than ``MAX_FILE_BYTES`` is refused unread (certificates and
  bundles are kilobytes; memory stays flat).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drillbook.catalogue.common import resolve_relative

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_FILES = 5000
CERT_SUFFIXES = {".pem", ".crt", ".cer", ".cert", ".der"}
_PEM_MARKER = b"-----BEGIN CERTIFICATE-----"


@dataclass
class FileCertificate:
    """One certificate read from a file; ``index`` is its position in a bundle."""

    path: str
    index: int
    count: int  # certificates in the file
    cert: Any  # cryptography.x509.Certificate

    @property
    def target(self) -> str:
        return self.path if self.count == 1 else f"{self.path}#{self.index}"


@dataclass
class FileProblem:
    """A configured path that could not be read as certificates."""

    path: str
    error: str


def _walk(directory: Path) -> Iterator[Path]:
    seen = 0
    for root, dirs, files in os.walk(directory, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            seen += 1
            if seen > MAX_FILES:
                return
            yield Path(root) / name


def _read(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{size} bytes is too large for a certificate file (limit {MAX_FILE_BYTES})")
    return path.read_bytes()


def parse_certificates(data: bytes) -> list[Any]:
    """PEM (one or many) or a single DER certificate; raises ValueError when neither."""
    from cryptography import x509

    if _PEM_MARKER in data:
        return list(x509.load_pem_x509_certificates(data))
    if data[:1] == b"\x30":  # a DER SEQUENCE
        return [x509.load_der_x509_certificate(data)]
    raise ValueError("no PEM 'BEGIN CERTIFICATE' block and not a DER certificate")


def load_file(path: Path) -> list[FileCertificate]:
    certs = parse_certificates(_read(path))
    return [FileCertificate(path=str(path), index=i, count=len(certs), cert=c) for i, c in enumerate(certs)]


def load_paths(
    paths: list[str], *, base_dir: Path | None = None
) -> tuple[list[FileCertificate], list[FileProblem]]:
    """Every certificate under ``paths`` (relative to the catalogue: ``resolve_relative``) and every problem."""
    found: list[FileCertificate] = []
    problems: list[FileProblem] = []
    for raw in paths:
        path = resolve_relative(raw, base_dir)
        if path.is_dir():
            before = len(found)
            for entry in _walk(path):
                try:
                    data = _read(entry)
                except (OSError, ValueError) as exc:
                    if entry.suffix.lower() in CERT_SUFFIXES:
                        problems.append(FileProblem(path=str(entry), error=str(exc)))
                    continue
                suffix = entry.suffix.lower()
                if suffix not in CERT_SUFFIXES and (suffix or _PEM_MARKER not in data):
                    continue  # keys, configs, READMEs live next to certificates in secret mounts
                if _PEM_MARKER not in data and suffix not in {".der", ".cer"}:
                    continue  # e.g. a .pem holding only a private key
                try:
                    certs = parse_certificates(data)
                except ValueError as exc:
                    problems.append(FileProblem(path=str(entry), error=str(exc)))
                    continue
                found += [
                    FileCertificate(path=str(entry), index=i, count=len(certs), cert=c)
                    for i, c in enumerate(certs)
                ]
            if len(found) == before and not any(p.path.startswith(str(path)) for p in problems):
                problems.append(FileProblem(path=str(path), error="directory holds no certificate files"))
            continue
        try:
            found += load_file(path)
        except FileNotFoundError:
            problems.append(FileProblem(path=str(path), error="no such file or directory"))
        except (OSError, ValueError) as exc:
            problems.append(FileProblem(path=str(path), error=str(getattr(exc, "strerror", None) or exc)))
    return found, problems
