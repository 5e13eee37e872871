"""Re-verify a ledger export (CSV or JSON) offline: no database, the same walk as ``verify_rows``.

Rules this module enforces:
- an export filtered by control or time carries link rows (seq, prev_hash,
  hash, ``omitted``) for the records it leaves out, so its chain is
  contiguous from its first row to the head: a row removed from the file is a
  gap (``deleted``), named by seq. Link rows are checked for linkage only.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from drillbook.ledger.canonical import parse_ts
from drillbook.ledger.checkpoint import Checkpoint
from drillbook.ledger.records import VerifyReport
from drillbook.ledger.verify import verify_rows

_INT_FIELDS = ("seq", "map_index", "try_number")


def _from_export(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Turn one exported record (CSV strings or JSON values) back into hashable fields."""
    row = dict(raw)
    if raw.get("omitted") or raw.get("record_type") == "":  # a link row: a record the filter left out
        return {
            "seq": int(row["seq"]),
            "prev_hash": row["prev_hash"],
            "hash": row["hash"],
            "omitted": True,
            "drill": None,
            "run_id": None,
        }
    for name in _INT_FIELDS:
        row[name] = int(row[name])
    if isinstance(row["controls"], str):
        row["controls"] = json.loads(row["controls"])
    # A CSV export carries ``result`` as the stored JSON text: it is hashed verbatim, like in the database.
    parse_ts(row["recorded_at"])  # a malformed timestamp is an edit, caught by the hash; this names it early
    return row


def _csv_rows(path: Path) -> Iterator[dict[str, Any]]:
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames  # an export always has its header row, even when no record matched
        if not header or not {"seq", "prev_hash", "hash"} <= set(header):
            found = (
                "an empty file"
                if not header
                else f"a first line of {len(header)} column(s) without seq, prev_hash, hash"
            )
            raise ValueError(f"expected a JSON-lines or CSV export, found {found}")
        for raw in reader:
            yield _from_export(raw)


def _json_rows(path: Path) -> Iterator[dict[str, Any]]:
    # The JSON export writes one record per line inside the array, so it can be read line by line.
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            text = line.strip().rstrip(",")
            if text in ("", "[", "]"):
                continue
            yield _from_export(json.loads(text))


def verify_export(path: str | Path, *, checkpoint: Checkpoint | None = None) -> VerifyReport:
    """Re-verify a CSV or JSON export offline: every record's hash, and an unbroken chain from its first row.

    A filtered export carries a link row (seq, prev_hash, hash) for every record the filter left out, from
    its first record to the head at export time, so a row removed from the file is a gap that is named.
    A ``checkpoint`` inside the exported range is compared like in the database.
    """
    file = Path(path)
    with file.open(encoding="utf-8") as fh:
        first = fh.read(1)
    if first == "\x00":
        raise ValueError("expected a JSON-lines or CSV export, found NUL bytes (a binary file)")
    rows = _json_rows(file) if first in ("[", "{") else _csv_rows(file)
    return verify_rows(rows, contiguous=True, start_anywhere=True, checkpoint=checkpoint)
