"""Signed checkpoints of the chain head: what lets a plain verify catch truncation and rewrites.

Rules this module enforces:
- a checkpoint is (seq, hash, signed_at) of the head, signed with Ed25519
  (``cryptography``) over the exact bytes of ``Checkpoint.payload``; the key
  comes from ``$DRILLBOOK_CHECKPOINT_KEY`` or the password of the connection
  ``drillbook_checkpoint_key`` (PEM, or the 32-byte seed as hex or base64).
  Without a key the checkpoint is stored **unsigned** and every message says
  so: an unsigned checkpoint still catches rows cut from the end by someone
  who did not also rewrite the checkpoints, nothing more;
- every checkpoint is stored in the database (``drillbook_checkpoint``,
  append-only) and, when ``$DRILLBOOK_CHECKPOINT_PATH`` names a file or a
  directory, also there (a JSON line appended with fsync, or one file per
  checkpoint): a copy outside the database that a database superuser cannot
  reach. The digest also posts the full head hash to Slack;
- verification trusts the public key in ``$DRILLBOOK_CHECKPOINT_PUBLIC_KEY``
  (else the one derived from the private key). With neither, a signature is
  checked against the key stored with it, which proves only that the
  checkpoint was not edited, and the report says so;
- ``compare`` names what happened in words: rows cut from the end ("N rows
  ... are missing") versus a rewritten chain ("record S no longer has the
  hash the checkpoint signed").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drillbook.errors import ConfigurationError

KEY_ENV = "DRILLBOOK_CHECKPOINT_KEY"
PUBLIC_KEY_ENV = "DRILLBOOK_CHECKPOINT_PUBLIC_KEY"
PATH_ENV = "DRILLBOOK_CHECKPOINT_PATH"
KEY_CONNECTION = "drillbook_checkpoint_key"
_TABLE = "drillbook_checkpoint"


@dataclass(frozen=True)
class Checkpoint:
    """The head of the chain at one moment, signed (or plainly unsigned)."""

    seq: int
    hash: str
    signed_at: str
    source: str
    key_id: str | None = None
    public_key: str | None = None  # raw 32 bytes as hex
    signature: str | None = None  # hex

    @property
    def signed(self) -> bool:
        return bool(self.signature)

    def payload(self) -> bytes:
        return f"drillbook-checkpoint/v1\nseq={self.seq}\nhash={self.hash}\nsigned_at={self.signed_at}\n".encode()

    def describe(self) -> str:
        how = f"signed by key {self.key_id}" if self.signed else "UNSIGNED"
        return f"checkpoint seq={self.seq} {self.hash[:12]}… at {self.signed_at} ({how}, {self.source})"


# -- keys ---------------------------------------------------------------------------------------
def _raw32(text: str, *, what: str) -> bytes:
    value = text.strip()
    try:
        raw = bytes.fromhex(value) if len(value) == 64 else base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 32:
        raise ConfigurationError(
            f"{what} is not an Ed25519 key: expected PEM, or 32 bytes as 64 hex digits or base64, "
            f"got {len(value)} characters"
        )
    return raw


def load_private_key(text: str, *, what: str = KEY_ENV) -> Any:
    """An Ed25519 private key from PEM, or its 32-byte seed as hex or base64."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from drillbook.safety.redact import register_secret

    register_secret(text.strip())
    if "-----BEGIN" in text:
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"{what} is not a readable unencrypted PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigurationError(f"{what} holds a {type(key).__name__}, expected an Ed25519 private key")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw32(text, what=what))


def load_public_key(text: str, *, what: str = PUBLIC_KEY_ENV) -> Any:
    """An Ed25519 public key from PEM, or its 32 bytes as hex or base64."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if "-----BEGIN" in text:
        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError as exc:
            raise ConfigurationError(f"{what} is not a readable PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigurationError(f"{what} holds a {type(key).__name__}, expected an Ed25519 public key")
        return key
    return Ed25519PublicKey.from_public_bytes(_raw32(text, what=what))


def generate_key_hex() -> tuple[str, str]:
    """A new Ed25519 key pair as (private seed, public key), each 64 hex digits: the form KEY_ENV takes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    seed = key.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return seed.hex(), key.public_key().public_bytes(raw, serialization.PublicFormat.Raw).hex()


def public_hex(public_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def key_id(public_key_hex: str) -> str:
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()[:16]


@dataclass(frozen=True)
class CheckpointSettings:
    """Where the signing key, the trusted public key and the outside copy come from."""

    private_key: str | None = None
    public_key: str | None = None
    path: str | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> CheckpointSettings:
        """Setting DRILLBOOK_CHECKPOINT_KEY (else connection ``drillbook_checkpoint_key``), public key and path."""
        private = settings.checkpoint_key or None
        if private is None:
            from drillbook.resources.connections import connection_from_env

            conn = connection_from_env(KEY_CONNECTION)
            private = conn.password if conn is not None and conn.password else None
        return cls(
            private_key=private,
            public_key=settings.checkpoint_public_key or None,
            path=str(settings.checkpoint_path) if settings.checkpoint_path else None,
        )

    def signer(self) -> Any:
        return load_private_key(self.private_key) if self.private_key else None

    def trusted_public_hex(self) -> str | None:
        if self.public_key:
            return public_hex(load_public_key(self.public_key))
        if self.private_key:
            return public_hex(load_private_key(self.private_key).public_key())
        return None


# -- making and storing -------------------------------------------------------------------------
def sign(seq: int, head_hash: str, *, signer: Any, source: str, now: datetime | None = None) -> Checkpoint:
    """A checkpoint of (seq, hash) now; unsigned when ``signer`` is None."""
    signed_at = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    unsigned = Checkpoint(seq=seq, hash=head_hash, signed_at=signed_at, source=source)
    if signer is None:
        return unsigned
    pub = public_hex(signer.public_key())
    return Checkpoint(
        seq=seq,
        hash=head_hash,
        signed_at=signed_at,
        source=source,
        key_id=key_id(pub),
        public_key=pub,
        signature=signer.sign(unsigned.payload()).hex(),
    )


def store_in_db(cur: Any, cp: Checkpoint) -> None:
    cur.execute(
        f"INSERT INTO {_TABLE} (seq, hash, signed_at, key_id, public_key, signature, source) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (cp.seq, cp.hash, cp.signed_at, cp.key_id, cp.public_key, cp.signature, cp.source),
    )


def store_outside(path: str, cp: Checkpoint) -> Path:
    """Append the checkpoint to a JSON-lines file, or write it as one file in a directory; fsync either way."""
    target = Path(path)
    line = json.dumps(asdict(cp), sort_keys=True) + "\n"
    if target.is_dir() or path.endswith(os.sep):
        target.mkdir(parents=True, exist_ok=True)
        stamp = cp.signed_at.replace(":", "").replace("-", "").replace(".", "")
        target = target / f"checkpoint-{cp.seq:012d}-{stamp}.json"
        mode = "w"
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = "a"
    with target.open(mode, encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    return target


# -- reading and checking -----------------------------------------------------------------------
def _from_doc(doc: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        seq=int(doc["seq"]),
        hash=str(doc["hash"]),
        signed_at=str(doc["signed_at"]),
        source=str(doc.get("source", "")),
        key_id=doc.get("key_id"),
        public_key=doc.get("public_key"),
        signature=doc.get("signature"),
    )


def read_outside(path: str | None) -> tuple[list[Checkpoint], list[str]]:
    """Checkpoints from the file or directory (missing: none) and one problem line per unreadable entry."""
    if not path:
        return [], []
    target = Path(path)
    files = (
        sorted(target.glob("checkpoint-*.json")) if target.is_dir() else ([target] if target.exists() else [])
    )
    found: list[Checkpoint] = []
    problems: list[str] = []
    for file in files:
        with file.open(encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    found.append(_from_doc(json.loads(line)))
                except (ValueError, KeyError, TypeError):
                    problems.append(f"{file}:{number}: not a drillbook checkpoint")
    return found, problems


def read_db(cur: Any) -> list[Checkpoint]:
    cur.execute(
        f"SELECT seq, hash, signed_at, source, key_id, public_key, signature FROM {_TABLE} ORDER BY id"
    )
    cols = ("seq", "hash", "signed_at", "source", "key_id", "public_key", "signature")
    return [_from_doc(dict(zip(cols, row, strict=True))) for row in cur.fetchall()]


def signature_problem(cp: Checkpoint, trusted_hex: str | None) -> str | None:
    """Why ``cp``'s signature cannot be trusted, or None (unsigned checkpoints are not a problem here)."""
    from cryptography.exceptions import InvalidSignature

    if not cp.signed:
        return None
    if trusted_hex and cp.public_key != trusted_hex:
        return f"{cp.describe()} is signed by key {cp.key_id}, not by the trusted key {key_id(trusted_hex)}"
    try:
        load_public_key(cp.public_key or "", what="the checkpoint's public key").verify(
            bytes.fromhex(cp.signature or ""), cp.payload()
        )
    except (InvalidSignature, ValueError, ConfigurationError):
        return f"{cp.describe()} has a signature that does not match its seq, hash and time: it was forged or edited"
    return None


def newest(checkpoints: list[Checkpoint]) -> Checkpoint | None:
    """The checkpoint covering the most records (latest signed_at among equals)."""
    return max(checkpoints, key=lambda c: (c.seq, c.signed_at), default=None)


def compare(cp: Checkpoint, *, last_seq: int, hash_at_seq: str | None) -> tuple[str, str] | None:
    """(reason, message) when the chain no longer holds what ``cp`` signed; None when it does."""
    signed = "signed" if cp.signed else "recorded (unsigned)"
    if cp.seq > last_seq:
        missing = cp.seq - last_seq
        return (
            "truncated",
            f"{missing} row{'s' if missing != 1 else ''} up to checkpoint seq {cp.seq} {'are' if missing != 1 else 'is'} missing "
            f"(seq={last_seq + 1}..{cp.seq}): the chain ends at seq={last_seq}, but the {cp.describe()} was "
            f"{signed} over seq={cp.seq}; records were cut from the end",
        )
    if cp.seq > 0 and hash_at_seq != cp.hash:
        return (
            "rewritten",
            f"record {cp.seq} no longer has the hash the checkpoint {signed} ({cp.hash[:12]}…, now "
            f"{(hash_at_seq or '?')[:12]}…): the chain was rewritten ({cp.describe()})",
        )
    return None
