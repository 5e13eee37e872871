"""Rung ``verify.server``: the restore ran on a server that sorts and behaves like production's.

Rules this module enforces:
- the collation of the restored database (provider, ``LC_COLLATE``,
  ``LC_CTYPE``, ICU locale) must equal the one the structure reference
  recorded, else ``COLLATION_MISMATCH`` (high) with both: ``ORDER BY``, range
  scans and text unique constraints behave differently after a failover to
  such a server (an ICU ``en-US`` source sorts ``apple,Banana,cherry``, a libc
  ``C.UTF-8`` target ``Banana,apple,cherry``). A reference without the
  database section (format 1) is "not checked", said in the phase detail;
- a target whose collation can have a version (anything but ``C``, ``POSIX``
  and ``C.*``, which are byte order and never change) but reports none is
  ``COLLATION_UNVERIFIABLE`` (medium): a library upgrade that reorders text
  could not be noticed there;
- the scratch server's major version must be production's, taken from the
  dump header (``ArchiveInfo.server_version``): an older scratch server is
  ``SERVER_MAJOR_MISMATCH`` high (a dump using features of the newer major may
  fail or restore differently), a newer one medium (the drill did not use
  production's major); both versions are in the message. A dump that does not
  name its source server is stated, not guessed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from drillbook.result import Severity

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.verify.ladder import Ladder
    from drillbook.drills.base import PhaseHandle

_COMPARED = ("collation_provider", "collate", "ctype", "icu_locale")


def major_of(version: str | None) -> int | None:
    """The major of a server version string: ``16.2`` -> 16, ``15.20 (Debian ...)`` -> 15, ``9.6.24`` -> 9."""
    match = re.match(r"\s*(\d+)", version or "")
    return int(match.group(1)) if match else None


def _versionless(db: dict[str, Any]) -> bool:
    """True when the database's collation is byte order (C, POSIX, C.*): it has no version to report."""
    if db.get("collation_provider") != "libc":
        return False
    collate = str(db.get("collate") or "")
    return collate in ("C", "POSIX") or collate.startswith("C.")


def _label(db: dict[str, Any]) -> str:
    text = f"{db.get('collation_provider')} {db.get('collate')}"
    if db.get("icu_locale"):
        text += f" (ICU locale {db['icu_locale']})"
    return text


def check_collation(ladder: Ladder, restored: dict[str, Any], reference: dict[str, Any] | None) -> str:
    """COLLATION_MISMATCH against the reference, COLLATION_UNVERIFIABLE for a version-less target."""
    parts = [f"collation {_label(restored)}"]
    ladder.builder.checked()
    if restored.get("collation_version") is None and not _versionless(restored):
        ladder.builder.find(
            "COLLATION_UNVERIFIABLE",
            f"the scratch database's collation {_label(restored)} reports no collation version: a change of the "
            "collation library that reorders text cannot be detected on this server",
            subject=_label(restored),
            detail={"collation": _label(restored)},
        )
    expected = (reference or {}).get("database")
    if not isinstance(expected, dict):
        parts.append("not compared (the reference does not record the database collation)")
        return "; ".join(parts)
    ladder.builder.checked()
    differs = {k: (expected.get(k), restored.get(k)) for k in _COMPARED if expected.get(k) != restored.get(k)}
    if differs:
        ladder.builder.find(
            "COLLATION_MISMATCH",
            f"the reference's database sorts with {_label(expected)} but the restore ran on {_label(restored)}: "
            "ORDER BY, range scans and text unique constraints can behave differently after a failover",
            subject=_label(restored),
            detail={
                "expected": _label(expected),
                "restored": _label(restored),
                "differs": ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in differs.items()),
            },
        )
        parts.append(f"differs from the reference's {_label(expected)}")
    else:
        parts.append("matches the reference")
    if (
        expected.get("collation_version")
        and restored.get("collation_version")
        and expected["collation_version"] != restored["collation_version"]
    ):
        parts.append(f"collation version {expected['collation_version']} -> {restored['collation_version']}")
    return "; ".join(parts)


def check_server_major(ladder: Ladder, scratch_version: str, source_version: str | None) -> str:
    """SERVER_MAJOR_MISMATCH when the scratch server's major is not the dump's source server's."""
    scratch, source = major_of(scratch_version), major_of(source_version)
    ladder.facts.setdefault("server", {}).update(
        {"scratch_server_version": scratch_version, "source_server_version": source_version}
    )
    if source is None or scratch is None:
        return (
            f"scratch server {scratch_version}; the dump does not name its source server, major not compared"
        )
    ladder.builder.checked()
    if scratch == source:
        return f"scratch server {scratch_version} has the source's major ({source_version})"
    older = scratch < source
    ladder.builder.find(
        "SERVER_MAJOR_MISMATCH",
        f"the dump was taken from a PostgreSQL {source_version} server but restored into PostgreSQL {scratch_version}: "
        + (
            "the scratch server is older than production, objects or syntax of the newer major may fail or differ"
            if older
            else "the drill did not prove a restore into production's major"
        ),
        severity=Severity.HIGH if older else Severity.MEDIUM,
        subject=f"source {source} vs scratch {scratch}",
        detail={"source_server_version": source_version, "scratch_server_version": scratch_version},
    )
    return f"scratch server {scratch_version} vs source {source_version}: major differs"


def run(ladder: Ladder, ph: PhaseHandle) -> None:
    """Compare the scratch server's collation and major with the reference and the dump."""
    from drillbook.drills.backup_restore.verify.catalog_objects import read_database

    restored = ladder.shared.get("restored_structure", {}).get("database") or read_database(ladder.conn)
    ladder.facts["server"] = {"database": restored}
    collation = check_collation(ladder, restored, ladder.shared.get("reference"))
    if not ladder.verify.reference:
        collation = collation.replace(
            "the reference does not record the database collation", "no reference configured"
        )
    version = str(ladder.conn.execute("show server_version").fetchone()[0])
    major = check_server_major(ladder, version, ladder.source_server_version)
    ph.detail = f"{collation}; {major}"
