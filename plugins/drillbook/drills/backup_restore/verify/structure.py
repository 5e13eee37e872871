"""Rung 1, structure: the restored catalog must match the committed reference.

Rules this module enforces:
- a restore with no user table is ``EMPTY_RESTORE``; this is checked on every
  run, with or without a reference;
- with ``verify.reference`` (a file relative to the catalogue's directory,
  written by ``drillbook reference write``), every object of the reference
  must be restored with the same signature (``STRUCTURE_MISSING``, high) and
  every restored object should be in the reference (``STRUCTURE_UNEXPECTED``,
  low: an intended schema change not yet recorded);
- every missing, changed or unexpected object is one finding naming it
  (a column, an index, a trigger, a policy, a grant: never folded into its
  table's finding, where a sixth name used to vanish into "and N more"); a
  missing table is reported once, not once per column, index and trigger; an
  object whose signature differs (a column's type, a trigger now disabled,
  RLS switched off) is reported as missing, with the expected and restored text;
- after ``MAX_FINDINGS_PER_CODE`` findings per code one summary finding names
  all the rest, and ``details.verify.structure.missing_objects`` /
  ``unexpected_objects`` list every object, however many;
- a section the reference does not hold (a format-1 file has no triggers,
  policies, types, grants or extensions) is not compared and is reported as
  ``not checked`` in the phase detail and ``details.verify.structure``;
- a reference that is configured but unreadable is ``CONFIG_INVALID``
  (ERROR): the comparison could not run, so it never counts as passed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drillbook.drills.backup_restore.verify.catalog import (
    READABLE_FORMATS,
    canonical,
    flatten,
    read_structure,
    user_tables,
)
from drillbook.drills.backup_restore.verify.catalog_objects import SECTIONS

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.verify.ladder import Ladder
    from drillbook.drills.base import PhaseHandle

MAX_FINDINGS_PER_CODE = 100


@dataclass
class Difference:
    """One object (relation, column, index, trigger, grant, ...) that is missing, changed or unexpected."""

    key: str  # e.g. "table public.orders", "trigger public.orders.audit"
    whole: bool = False  # the object itself is missing / unexpected
    items: list[str] = field(default_factory=list)  # how its signature differs


def structure_digest(structure: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (without server version and database facts): equal structures, equal digests."""
    body = {k: v for k, v in structure.items() if k not in {"server_major_version", "database"}}
    text = json.dumps(canonical(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def load_reference(path: Path) -> dict[str, Any]:
    """Read a reference file (format 1 or 2); raise ValueError saying what is wrong with it."""
    from drillbook.catalogue.reader import FileProblem, read_json

    try:  # bounded: size, UTF-8, nesting depth
        data = read_json(path)
    except FileProblem as exc:
        if exc.message == "file not found":
            raise ValueError(
                f"file {str(path)!r} does not exist; create it with `drillbook reference write`"
            ) from None
        raise ValueError(f"file {str(path)!r} is not a readable JSON reference: {exc}") from None
    if not isinstance(data, dict) or data.get("drillbook_structure_reference") not in READABLE_FORMATS:
        found = data.get("drillbook_structure_reference") if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"file {str(path)!r} is not a drillbook structure reference "
            f"(expected key 'drillbook_structure_reference' with one of {list(READABLE_FORMATS)}, found {found!r})"
        )
    return data


def write_reference(conn: Any, path: Path) -> dict[str, Any]:
    """Write the structure of ``conn``'s database to ``path`` as canonical JSON; return it."""
    structure = read_structure(conn)
    save_reference(structure, path)
    return structure


def save_reference(structure: dict[str, Any], path: Path) -> None:
    """Write ``structure`` as canonical JSON (sorted keys, two-space indent, trailing newline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(structure, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def unrecorded_sections(reference: dict[str, Any]) -> list[str]:
    """Sections the reference does not hold (an older format): they are not checked, and said so."""
    return [name for name in SECTIONS if name not in reference]


def diff_structures(
    reference: dict[str, Any], restored: dict[str, Any]
) -> tuple[list[Difference], list[Difference]]:
    """Return (missing, unexpected): one Difference per object, each named; a missing table hides its children.

    Only the sections the reference recorded are compared, so a format-1
    reference does not call every restored trigger unexpected.
    """
    skipped = set(unrecorded_sections(reference))
    ref = flatten(reference)
    got = flatten({k: v for k, v in restored.items() if k not in skipped})
    missing: list[Difference] = []
    for key, (signature, parent) in ref.items():
        if key in got:
            if got[key][0] != signature:
                missing.append(Difference(key, items=[f"expected {signature!r}, restored {got[key][0]!r}"]))
        elif parent is None or parent in got:  # a missing parent is reported once, for all of its children
            missing.append(Difference(key, whole=True))
    unexpected = [
        Difference(key, whole=True)
        for key, (_signature, parent) in got.items()
        if key not in ref and (parent is None or parent in ref)  # signature changes were reported as missing
    ]
    return sorted(missing, key=lambda d: d.key), sorted(unexpected, key=lambda d: d.key)


def _emit(ladder: Ladder, code: str, diffs: list[Difference], *, reference: str) -> None:
    for diff in diffs[:MAX_FINDINGS_PER_CODE]:
        subject = diff.key.split(" ", 1)[1]
        for prefix in ("security ", "on "):  # "row security x", "grant on table x"
            subject = subject.removeprefix(prefix)
        if diff.whole and code == "STRUCTURE_MISSING":
            message = f"{diff.key} is in the reference but was not restored"
        elif diff.whole:
            message = f"{diff.key} was restored but is not in the reference"
        else:
            message = f"{diff.key} differs from the reference: " + "; ".join(diff.items)
        detail: dict[str, str | int] = {
            "object": diff.key,
            "kind": diff.key.split(" ", 1)[0],
            "reference": reference,
        }
        if diff.items:
            detail["differences"] = "; ".join(diff.items)
        ladder.builder.find(code, message, subject=subject, detail=detail)
    rest = diffs[MAX_FINDINGS_PER_CODE:]
    if rest:
        # Every object is still named: all of them in the message, and the list in details.verify.structure.
        ladder.builder.find(
            code,
            f"and {len(rest)} more objects differ from the reference: " + ", ".join(d.key for d in rest),
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
    ladder.shared["restored_structure"] = restored
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
    summary = (
        f"{len(tables)} tables, {len(restored['relations']) - len(tables)} views, "
        f"{len(restored['sequences'])} sequences, {len(restored['functions'])} functions"
    )

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
    ladder.shared["reference"] = reference
    missing, unexpected = diff_structures(reference, restored)
    ladder.builder.checked()
    not_checked = unrecorded_sections(reference)
    facts["reference_digest"] = structure_digest(reference)
    facts["reference_format"] = reference.get("drillbook_structure_reference")
    facts["missing"] = len(missing)
    facts["unexpected"] = len(unexpected)
    facts["missing_objects"] = [d.key for d in missing]
    facts["unexpected_objects"] = [d.key for d in unexpected]
    facts["not_checked"] = not_checked
    _emit(ladder, "STRUCTURE_MISSING", missing, reference=ladder.verify.reference)
    _emit(ladder, "STRUCTURE_UNEXPECTED", unexpected, reference=ladder.verify.reference)
    if not missing and not unexpected:
        ph.detail = summary + "; matches the reference"
    else:
        ph.detail = (
            summary + f"; vs reference: {len(missing)} missing/different, {len(unexpected)} unexpected"
        )
    if not_checked:
        ph.detail += f"; not checked (the reference does not record them): {', '.join(not_checked)}"
