"""Canonical JSON and the hash chain: what is hashed is exactly what is stored.

Rules this module enforces:
- a record's hash is ``sha256(prev_hash + canonical_json(record))`` where the
  record holds every stored column except ``hash`` itself (``seq`` and
  ``prev_hash`` included, so moving or relinking a row changes its hash);
- canonical JSON is ``json.dumps(sort_keys=True, separators=(",", ":"),
  ensure_ascii=False)`` encoded as UTF-8; timestamps are ISO-8601 UTC strings
  with microseconds and a ``Z`` (``2026-01-31T12:00:00.000000Z``), the
  precision PostgreSQL stores; ``controls`` is a JSON array of strings;
- the ``result`` document is *normalised before hashing* into the form
  PostgreSQL's jsonb gives back (``normalise``): jsonb re-orders keys (harmless,
  keys are sorted anyway) and rewrites numbers (``1e+20`` comes back as the
  integer ``100000000000000000000``, ``-0.0`` as ``0.0``) and refuses NUL
  characters and lone surrogates. Hashing the normalised value means the hash
  recomputed from a row read back always equals the stored hash; the store
  also compares the value PostgreSQL returns from the INSERT with the value it
  hashed and rolls back on any difference, so a normalisation gap can never
  produce a record that verifies as tampered;
- every string of a record passes through ``drillbook.redact.redact`` in the
  same walk (keys included), so secrets never reach a ledger row.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from drillbook.redact import redact

GENESIS_HASH = "0" * 64

# Every stored column, in table order; ``hash`` is the only column not hashed.
HASHED_COLUMNS: tuple[str, ...] = (
    "seq",
    "recorded_at",
    "record_type",
    "kind",
    "drill",
    "target",
    "verdict",
    "controls",
    "dag_id",
    "run_id",
    "task_id",
    "map_index",
    "try_number",
    "trigger",
    "result",
    "prev_hash",
)
COLUMNS: tuple[str, ...] = (*HASHED_COLUMNS, "hash")

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")  # jsonb refuses NUL and lone surrogates
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def format_ts(value: datetime) -> str:
    """Render a timestamp the canonical way: UTC, microseconds, ``Z``."""
    if value.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone; ledger timestamps are always aware")
    return value.astimezone(UTC).strftime(_TS_FORMAT)


def parse_ts(text: str) -> datetime:
    """Inverse of ``format_ts`` (used when re-verifying an export offline)."""
    return datetime.strptime(text, _TS_FORMAT).replace(tzinfo=UTC)


def _clean_str(value: str) -> str:
    value = redact(value)
    return _BAD_CHARS.sub("\ufffd", value) if _BAD_CHARS.search(value) else value


def _normal_float(value: float) -> float | int | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return _NON_FINITE[value]
    if value == 0.0:
        return 0.0  # jsonb has no negative zero
    text = repr(value)
    if "e+" in text:
        # jsonb prints large numbers without an exponent and psycopg reads them back as int;
        # go through Decimal so 1e23 stays 10**23 and not the binary float's exact value.
        return int(Decimal(text))
    return value


def normalise(value: Any) -> Any:
    """Redact every string and put a JSON document in the exact form jsonb returns."""
    if isinstance(value, str):
        return _clean_str(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return _normal_float(value)
    if isinstance(value, Mapping):
        return {_clean_str(str(k)): normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    if isinstance(value, datetime):
        return _clean_str(value.isoformat())
    return _clean_str(str(value))


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, non-ASCII kept as is, NaN refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_document(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed view of one record: every column except ``hash``, timestamps canonical."""
    doc: dict[str, Any] = {}
    for name in HASHED_COLUMNS:
        value = fields[name]
        if name == "recorded_at" and isinstance(value, datetime):
            value = format_ts(value)
        elif name == "controls":
            value = list(value or [])
        doc[name] = value
    return doc


def record_hash(fields: Mapping[str, Any]) -> str:
    """``sha256(prev_hash + canonical JSON of the record)`` as 64 hex digits."""
    body = canonical_json(record_document(fields)).encode("utf-8")
    return hashlib.sha256(fields["prev_hash"].encode("ascii") + body).hexdigest()
