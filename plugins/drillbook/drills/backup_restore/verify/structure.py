"""Rung 1, structure: the restored catalog must match the committed reference.

Rules this module enforces:
- a restore with no user table is ``EMPTY_RESTORE``; this is checked on every
  run, with or without a reference;
- with ``verify.reference`` (a file relative to the catalogue's directory,
  written by ``drillbook reference write``), every object of the reference
  must be restored with the same signature (``STRUCTURE_MISSING``, high) and
  every restored object should be in the reference (``STRUCTURE_UNEXPECTED``,
  low: an intended schema change not yet recorded);
- a missing table is reported once, not once per column, index and
  constraint; an object whose signature differs (a column's type, an index's
  definition) is reported as missing, with the expected and restored text;
- a reference that is configured but unreadable is ``CONFIG_INVALID``
  (ERROR): the comparison could not run, so it never counts as passed;
- at most ``MAX_FINDINGS_PER_CODE`` findings per code, then one summary.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drillbook.drills.backup_restore.verify.catalog import (
    REFERENCE_FORMAT,
    canonical,
    flatten,
    read_structure,
    user_tables,
)

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.verify.ladder import Ladder
    from drillbook.drills.base import PhaseHandle

MAX_FINDINGS_PER_CODE = 20


@dataclass
class Difference:
    """One top-level object (relation, sequence, function) and what differs inside it."""

    key: str  # e.g. "table public.orders"
    whole: bool = False  # the object itself is missing / unexpected
    items: list[str] = field(default_factory=list)  # children that differ


def structure_digest(structure: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (without the server version): equal structures, equal digests."""
    body = {k: v for k, v in structure.items() if k not in {"server_major_version"}}
    text = json.dumps(canonical(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def load_reference(path: Path) -> dict[str, Any]:
    """Read a reference file; raise ValueError saying what is wrong with it."""
    from drillbook.catalogue.reader import FileProblem, read_json

    try:  # bounded: size, UTF-8, nesting depth
        data = read_json(path)
    except FileProblem as exc:
        if exc.message == "file not found":
            raise ValueError(f"file {str(path)!r} does not exist; create it with `drillbook reference write`") from None
        raise ValueError(f"file {str(path)!r} is not a readable JSON reference: {exc}") from None
    if not isinstance(data, dict) or data.get("drillbook_structure_reference") != REFERENCE_FORMAT:
        raise ValueError(
            f"file {str(path)!r} is not a drillbook structure reference "
            f"(expected key 'drillbook_structure_reference': {REFERENCE_FORMAT})"
        )
    return data


def write_reference(conn: Any, path: Path) -> dict[str, Any]:
    """Write the structure of ``conn``'s database to ``path`` as canonical JSON; return it."""
    structure = read_structure(conn)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(structure, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return structure


def diff_structures(reference: dict[str, Any], restored: dict[str, Any]) -> tuple[list[Difference], list[Difference]]:
    """Return (missing, unexpected): what the reference has that the restore lacks, and the reverse."""
    ref, got = flatten(reference), flatten(restored)
    missing: dict[str, Difference] = {}
    for key, (signature, parent) in ref.items():
        if key in got:
            if got[key][0] != signature:
                group = missing.setdefault(parent or key, Difference(parent or key))
                group.items.append(f"{key}: expected {signature!r}, restored {got[key][0]!r}")
            continue
        if parent is None:
            missing.setdefault(key, Difference(key)).whole = True
        elif parent in got:  # a missing parent is reported once, for all of its children
            missing.setdefault(parent, Difference(parent)).items.append(f"{key} missing")
    unexpected: dict[str, Difference] = {}
    for key, (_signature, parent) in got.items():
        if key in ref:
            continue  # signature changes were reported as missing
        if parent is None:
            unexpected.setdefault(key, Difference(key)).whole = True
        elif parent in ref:
            unexpected.setdefault(parent, Difference(parent)).items.append(f"{key} not in reference")
    return sorted(missing.values(), key=lambda d: d.key), sorted(unexpected.values(), key=lambda d: d.key)


def _emit(ladder: Ladder, code: str, diffs: list[Difference], *, reference: str) -> None:
    for diff in diffs[:MAX_FINDINGS_PER_CODE]:
        subject = diff.key.split(" ", 1)[1]
        if diff.whole and code == "STRUCTURE_MISSING":
            message = f"{diff.key} is in the reference but was not restored"
        elif diff.whole:
            message = f"{diff.key} was restored but is not in the reference"
        else:
            message = f"{diff.key} differs from the reference: " + "; ".join(diff.items[:5])
            if len(diff.items) > 5:
                message += f"; and {len(diff.items) - 5} more"
        detail: dict[str, str | int] = {"object": diff.key, "reference": reference}
        if diff.items:
            detail["differences"] = "; ".join(diff.items)
            detail["count"] = len(diff.items)
        ladder.builder.find(code, message, subject=subject, detail=detail)
    rest = diffs[MAX_FINDINGS_PER_CODE:]
    if rest:
        ladder.builder.find(
            code,
            f"and {len(rest)} more objects differ from the reference: " + ", ".join(d.key for d in rest[:10]),
            subject="(more)",
            detail={"count": len(rest), "reference": reference},
        )


def run(ladder: Ladder, ph: PhaseHandle) -> None:
    """Read the restored catalog, check it is not empty, compare it with the reference."""
    restored = read_structure(ladder.conn)
    tables = user_tables(restored)
    facts: dict[str, Any] = {
        "tables": len(tables),
        "relations": len(restored["relations"]),
        "sequences": len(restored["sequences"]),
        "functions": len(restored["functions"]),
        "digest": structure_digest(restored),
    }
    ladder.facts["structure"] = facts
    ladder.builder.measurements.counts["tables_restored"] = len(tables)

    ladder.builder.checked()
    if not tables:
        ladder.builder.find(
            "EMPTY_RESTORE",
            f"the restored database has no user tables ({len(restored['relations'])} other relations, "
            f"{len(restored['functions'])} functions)",
            subject="user tables",
            detail={"relations": len(restored["relations"])},
        )
    summary = f"{len(tables)} tables, {len(restored['relations']) - len(tables)} views, " \
              f"{len(restored['sequences'])} sequences, {len(restored['functions'])} functions"

    if not ladder.verify.reference:
        ph.detail = summary + "; no reference configured"
        facts["reference"] = None
        return
    path = ladder.base_dir / ladder.verify.reference
    facts["reference"] = ladder.verify.reference
    try:
        reference = load_reference(path)
    except (OSError, ValueError) as exc:
        ladder.builder.find(
            "CONFIG_INVALID",
            f"verify.reference {ladder.verify.reference!r} cannot be used: {exc}",
            subject=ladder.verify.reference,
        )
        ph.status = "failed"
        ph.detail = summary + "; reference unreadable"
        return
    missing, unexpected = diff_structures(reference, restored)
    ladder.builder.checked()
    facts["reference_digest"] = structure_digest(reference)
    facts["missing"] = len(missing)
    facts["unexpected"] = len(unexpected)
    _emit(ladder, "STRUCTURE_MISSING", missing, reference=ladder.verify.reference)
    _emit(ladder, "STRUCTURE_UNEXPECTED", unexpected, reference=ladder.verify.reference)
    if not missing and not unexpected:
        ph.detail = summary + "; matches the reference"
    else:
        ph.detail = summary + f"; vs reference: {len(missing)} missing/different, {len(unexpected)} unexpected"
