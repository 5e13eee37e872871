"""Walk a hash chain and name the first record that does not match.

Rules this module enforces:
- records are checked strictly in ``seq`` order, one at a time (the caller
  streams them from a server-side cursor or a file), so memory stays flat;
- three checks per record, in this order, and the first failure ends the walk:
  1. ``deleted``   — ``seq`` is not the previous seq + 1 (the chain starts at 1):
                     the missing seq is named;
  2. ``reordered`` — ``prev_hash`` is not the previous record's hash: records were
                     swapped or renumbered, or the one before was replaced
                     together with its hash;
  3. ``edited``    — recomputing ``sha256(prev_hash + canonical JSON)`` from the
                     stored columns does not give the stored ``hash``;
- deleting the newest records leaves a shorter chain that is still intact; an
  auditor who kept the head hash of an earlier verify passes it as
  ``expect_head`` and the walk reports ``deleted`` when that hash is gone;
- an export filtered by control or time has legitimate gaps: with
  ``contiguous=False`` every record's own hash is still recomputed and linkage
  is checked wherever two consecutive seqs are both present.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from drillbook.ledger.canonical import GENESIS_HASH, parse_ts, record_hash
from drillbook.ledger.records import VerifyReport


def _name(row: Mapping[str, Any]) -> str:
    return f"seq={row['seq']} (drill {row.get('drill')!r}, run_id {row.get('run_id')!r})"


def verify_rows(
    rows: Iterable[Mapping[str, Any]], *, contiguous: bool = True, expect_head: str | None = None
) -> VerifyReport:
    """Check every row of a chain (see the module docstring); stop at the first bad one."""
    expected = (expect_head or "").strip().lower()
    if expect_head is not None and (len(expected) < 12 or any(c not in "0123456789abcdef" for c in expected)):
        raise ValueError(f"expected head {expect_head!r} is not a hash prefix of at least 12 hex digits")
    seen_expected = not expected
    checked = 0
    prev_seq = 0
    prev_hash = GENESIS_HASH
    prev_name = "the start of the chain"
    head: str | None = None
    for row in rows:
        seq = int(row["seq"])
        linked = seq == prev_seq + 1
        if contiguous and not linked:
            missing = prev_seq + 1
            gap = f"seq={missing}" if seq == missing + 1 else f"seq={missing}..{seq - 1}"
            return VerifyReport(
                ok=False,
                checked=checked,
                first_bad_seq=missing,
                reason="deleted",
                message=f"record {gap} is missing: {_name(row)} follows {prev_name}; "
                "evidence was deleted from the ledger",
                head_hash=head,
            )
        if linked and row["prev_hash"] != prev_hash:
            return VerifyReport(
                ok=False,
                checked=checked,
                first_bad_seq=seq,
                reason="reordered",
                message=f"record {_name(row)} does not link to {prev_name}: its prev_hash is "
                f"{str(row['prev_hash'])[:12]}… but the record before it hashes to {prev_hash[:12]}…; "
                "records were reordered or renumbered, or the record before it was replaced",
                head_hash=head,
            )
        computed = record_hash(row)
        if computed != row["hash"]:
            return VerifyReport(
                ok=False,
                checked=checked,
                first_bad_seq=seq,
                reason="edited",
                message=f"record {_name(row)} was edited: its stored columns hash to {computed[:12]}… "
                f"but its recorded hash is {str(row['hash'])[:12]}…",
                head_hash=head,
            )
        checked += 1
        prev_seq, prev_hash, prev_name, head = seq, row["hash"], _name(row), row["hash"]
        seen_expected = seen_expected or head.startswith(expected)
    if not seen_expected:
        return VerifyReport(
            ok=False,
            checked=checked,
            first_bad_seq=prev_seq + 1,
            reason="deleted",
            message=f"records from seq={prev_seq + 1} on are missing: the chain ends at {prev_name} and does not "
            f"contain the head {expected[:12]}… seen by an earlier verify; evidence was deleted from the end",
            head_hash=head,
        )
    return VerifyReport(
        ok=True,
        checked=checked,
        message=f"{checked} records, chain intact" + (f", head {head[:12]}" if head else ""),
        head_hash=head,
    )


# -- offline: re-verify an export file ---------------------------------------------------------
_INT_FIELDS = ("seq", "map_index", "try_number")


def _from_export(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Turn one exported record (CSV strings or JSON values) back into hashable fields."""
    row = dict(raw)
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
        for raw in csv.DictReader(fh):
            yield _from_export(raw)


def _json_rows(path: Path) -> Iterator[dict[str, Any]]:
    # The JSON export writes one record per line inside the array, so it can be read line by line.
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            text = line.strip().rstrip(",")
            if text in ("", "[", "]"):
                continue
            yield _from_export(json.loads(text))


def verify_export(path: str | Path) -> VerifyReport:
    """Re-verify a CSV or JSON export offline: every record's hash, and linkage where seqs are consecutive."""
    file = Path(path)
    with file.open(encoding="utf-8") as fh:
        first = fh.read(1)
    rows = _json_rows(file) if first in ("[", "{") else _csv_rows(file)
    return verify_rows(rows, contiguous=False)
