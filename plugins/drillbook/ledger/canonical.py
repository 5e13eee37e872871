"""Canonical JSON and the hash chain: what is hashed is exactly what is stored.

Rules this module enforces:
- a record's hash is ``sha256(prev_hash + canonical_json(record))`` where the
  record holds every stored column except ``hash`` itself (``seq`` and
  ``prev_hash`` included, so moving or relinking a row changes its hash);
- canonical JSON is ``json.dumps(sort_keys=True, separators=(",", ":"),
  ensure_ascii=False)`` encoded as UTF-8; timestamps are ISO-8601 UTC strings
  with microseconds and a ``Z`` (``2026-01-31T12:00:00.000000Z``), the
  precision PostgreSQL stores; ``controls`` is a JSON array of strings;
- ``result`` is stored in a ``json`` column (not ``jsonb``) as exactly the
  canonical JSON text that was hashed. ``json`` keeps text byte for byte, so
  there is no normalisation gap (jsonb would re-order keys, rewrite ``1e+20``
  as ``100000000000000000000`` and refuse NUL) and an export streams the
  stored text without re-serialising it, which is what keeps a year's export
  under a second (see docs/ledger.md). ``record_hash`` accepts ``result``
  either as a document or as that stored text, spliced verbatim: any byte
  changed in the stored text is an edit. The store compares the text
  PostgreSQL returns from the INSERT with the text it hashed and rolls back
  on any difference;
- every string of a record passes through ``drillbook.safety.redact.redact`` in
  ``normalise`` (keys included), so secrets never reach a ledger row; the same
  walk turns NaN/Infinity (not JSON) into strings and replaces NUL and lone
  surrogates, which PostgreSQL text cannot hold.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from drillbook.safety.redact import redact

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
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")  # PostgreSQL text cannot hold NUL; UTF-8 no lone surrogates
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


def _normal_float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return _NON_FINITE[value]
    return value


def normalise(value: Any) -> Any:
    """Redact every string and make a value storable as JSON text (see the module docstring)."""
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


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, non-ASCII kept as is, NaN refused."""
    return _ENCODER.encode(value)


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


_encode_str = json.encoder.encode_basestring  # what JSONEncoder(ensure_ascii=False) uses for every string


def _fast_record_text(f: Mapping[str, Any]) -> str | None:
    """``record_text`` for the shape every stored row has (str/int columns, text result), written out in
    sorted key order without building a document; None when a value has another type (the general path
    then decides). ``encode_basestring`` refuses a non-string with TypeError."""
    seq, map_index, try_number, at, result, controls = (
        f["seq"],
        f["map_index"],
        f["try_number"],
        f["recorded_at"],
        f["result"],
        f["controls"],
    )
    if not (
        type(seq) is int
        and type(map_index) is int
        and type(try_number) is int
        and type(result) is str
        and type(controls) is list
    ):
        return None
    if type(at) is not str:
        if not isinstance(at, datetime):
            return None
        at = format_ts(at)
    enc = _encode_str
    try:
        return (
            f'{{"controls":[{",".join([enc(c) for c in controls])}],"dag_id":{enc(f["dag_id"])},'
            f'"drill":{enc(f["drill"])},"kind":{enc(f["kind"])},"map_index":{map_index},'
            f'"prev_hash":{enc(f["prev_hash"])},"record_type":{enc(f["record_type"])},"recorded_at":{enc(at)},'
            f'"result":{result},"run_id":{enc(f["run_id"])},"seq":{seq},"target":{enc(f["target"])},'
            f'"task_id":{enc(f["task_id"])},"trigger":{enc(f["trigger"])},"try_number":{try_number},'
            f'"verdict":{enc(f["verdict"])}}}'
        )
    except TypeError:
        return None


def record_text(fields: Mapping[str, Any]) -> str:
    """Canonical JSON of the record; a ``result`` given as text is the stored JSON text, spliced verbatim.

    Equal to ``canonical_json(record_document(fields))`` when the text is the canonical JSON of
    the result, which is what the store writes.
    """
    fast = _fast_record_text(fields)
    if fast is not None:
        return fast
    doc = record_document(fields)
    result = doc.pop("result")
    if not isinstance(result, str):
        result = canonical_json(result)
    # Keys are sorted, so the record is: the keys before "result", "result", the keys after it.
    before = canonical_json({k: v for k, v in doc.items() if k < "result"})
    after = canonical_json({k: v for k, v in doc.items() if k > "result"})
    return f'{before[:-1]},"result":{result},{after[1:]}'


def record_hash(fields: Mapping[str, Any]) -> str:
    """``sha256(prev_hash + canonical JSON of the record)`` as 64 hex digits."""
    body = record_text(fields).encode("utf-8")
    return hashlib.sha256(fields["prev_hash"].encode("ascii") + body).hexdigest()
