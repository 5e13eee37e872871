"""Rung 4, integrity: sequences ahead of their columns, materialized views populated, indexes sound.

Rules this module enforces:
- every sequence must be ahead of every column it feeds (identity, OWNED BY
  or DEFAULT nextval), else the next insert collides: ``SEQUENCE_BEHIND``;
  a sequence no column uses is ``SEQUENCE_UNCHECKED`` (see ``sequences.py``);
- every materialized view must be populated (``pg_matviews.ispopulated``),
  else querying it fails: ``MATVIEW_UNPOPULATED``;
- with ``verify.amcheck`` ``auto`` (the default) or ``true`` every valid
  B-tree index is checked with amcheck's ``bt_index_check`` (structure and
  ordering; AccessShareLock only, no heap scan, so it stays cheap on large
  tables). The extension is created in the scratch database (schema
  ``drillbook_amcheck``) when missing: a scratch database is ours to change.
  A corruption error (SQLSTATE class ``XX``) is ``INDEX_CORRUPT``;
- amcheck that cannot be installed, or an index whose check fails for
  another reason (lock or statement timeout, permission), is NOT counted as a
  check and never vanishes: it is stated in the phase detail and in
  ``details.verify.integrity`` (``amcheck``, ``indexes_unchecked``). With
  ``auto`` that is all (amcheck is used where the server has it). With
  ``true`` amcheck was demanded, so each is a blocking finding as well:
  ``AMCHECK_UNAVAILABLE`` (the extension cannot run) or ``INDEX_UNCHECKED``
  naming the index: a check that was required and did not run makes the
  result ERROR, never PASS.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

__all__ = ["btree_outcomes", "check_indexes", "check_matviews", "check_sequences", "run"]

from drillbook.drills.backup_restore.verify import sequences
from drillbook.drills.backup_restore.verify.catalog_sql import USER_SCHEMA_FILTER, not_extension_member
from drillbook.drills.backup_restore.verify.sequences import check_sequences

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.verify.ladder import Ladder
    from drillbook.drills.base import PhaseHandle

AMCHECK_SCHEMA = "drillbook_amcheck"

_MATVIEWS_SQL = f"""
select n.nspname || '.' || c.relname, m.ispopulated
from pg_matviews m
join pg_namespace n on n.nspname = m.schemaname
join pg_class c on c.relnamespace = n.oid and c.relname = m.matviewname
where {USER_SCHEMA_FILTER} and {not_extension_member("pg_class", "c.oid")}
order by 1
"""

_BTREE_INDEXES_SQL = f"""
select i.oid::int8, n.nspname || '.' || i.relname, tn.nspname || '.' || t.relname
from pg_index x
join pg_class i on i.oid = x.indexrelid
join pg_class t on t.oid = x.indrelid
join pg_namespace tn on tn.oid = t.relnamespace
join pg_am am on am.oid = i.relam
join pg_namespace n on n.oid = i.relnamespace
where am.amname = 'btree' and x.indisvalid and x.indisready and i.relpersistence <> 't'
  and {USER_SCHEMA_FILTER} and {not_extension_member("pg_class", "x.indrelid")}
order by 2
"""


def check_matviews(ladder: Ladder) -> dict[str, Any]:
    """MATVIEW_UNPOPULATED for every materialized view restored without data."""
    rows = ladder.conn.execute(_MATVIEWS_SQL).fetchall()
    empty = [name for name, populated in rows if not populated]
    ladder.builder.checked(len(rows))
    for name in empty:
        ladder.builder.find(
            "MATVIEW_UNPOPULATED",
            f"materialized view {name} was restored without data: querying it fails until it is refreshed",
            subject=name,
            detail={"matview": name},
        )
    return {"matviews": len(rows), "matviews_unpopulated": len(empty)}


def _amcheck_schema(conn: Any) -> tuple[str | None, str]:
    """Schema of an installed (or newly installed) amcheck, or (None, why not)."""
    import psycopg

    row = conn.execute(
        "select n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace where e.extname = 'amcheck'"
    ).fetchone()
    if row:
        return str(row[0]), "amcheck already installed"
    try:
        with conn.transaction():  # an empty schema is not left behind when the extension fails
            conn.execute(f"create schema if not exists {AMCHECK_SCHEMA}")
            conn.execute(f"create extension if not exists amcheck schema {AMCHECK_SCHEMA}")
    except psycopg.Error as exc:
        diag = getattr(exc, "diag", None)
        reason = (diag.message_primary if diag is not None and diag.message_primary else str(exc)).strip()
        return None, f"amcheck unavailable on the scratch server: {reason}"
    return AMCHECK_SCHEMA, "amcheck installed in the scratch database"


def btree_outcomes(
    conn: Any, schema: str, in_scope: Callable[[str], bool], *, stop: threading.Event | None = None
) -> list[tuple[str, str | None, str | None]]:
    """``bt_index_check`` of every valid B-tree index in scope: (index, SQLSTATE, reason) — both None when sound.

    Only reads (prefetch.py runs it on a connection of its own); ``check_indexes`` turns the outcomes into
    checks and findings. ``stop`` set: the remaining indexes are not checked (the caller is closing).
    """
    import psycopg
    from psycopg import sql

    indexes = [
        (oid, name) for oid, name, table in conn.execute(_BTREE_INDEXES_SQL).fetchall() if in_scope(table)
    ]
    statement = sql.SQL("select {fn}(%s::oid::regclass)").format(fn=sql.Identifier(schema, "bt_index_check"))
    outcomes: list[tuple[str, str | None, str | None]] = []
    for oid, name in indexes:
        if stop is not None and stop.is_set():
            raise RuntimeError("B-tree checks stopped: the prefetch was closed")
        try:
            conn.execute(statement, (oid,))
        except psycopg.Error as exc:
            state = getattr(exc, "sqlstate", None) or ""
            diag = getattr(exc, "diag", None)
            reason = (diag.message_primary if diag is not None and diag.message_primary else str(exc)).strip()
            outcomes.append((name, state, reason))
            continue
        outcomes.append((name, None, None))
    return outcomes


def check_indexes(
    ladder: Ladder, prefetched: tuple[str | None, str, list[tuple[str, str | None, str | None]]] | None = None
) -> dict[str, Any]:
    """INDEX_CORRUPT for every B-tree index amcheck rejects; unchecked indexes are only reported.

    ``prefetched``: (schema, how, outcomes) read earlier by prefetch.py; None reads them here.
    """
    required = ladder.verify.amcheck is True
    if prefetched is not None:
        schema, how, outcomes = prefetched
    else:
        schema, how = _amcheck_schema(ladder.conn)
        outcomes = btree_outcomes(ladder.conn, schema, ladder.in_scope) if schema is not None else []
    if schema is None:
        if required:
            ladder.builder.find(
                "AMCHECK_UNAVAILABLE",
                f"verify.amcheck is true but no index could be checked: {how}",
                subject="amcheck",
                detail={"error": how},
            )
        return {"amcheck": how, "indexes_checked": 0}
    checked, corrupt, unchecked = 0, 0, []
    for name, state, reason in outcomes:
        if state is not None:
            if state.startswith("XX"):  # XX001 data_corrupted, XX002 index_corrupted
                ladder.builder.checked()
                checked += 1
                corrupt += 1
                ladder.builder.find(
                    "INDEX_CORRUPT",
                    f"amcheck rejects index {name}: {reason}",
                    subject=name,
                    detail={"index": name, "sqlstate": state, "error": reason},
                )
            else:
                unchecked.append(f"{name}: {reason} [{state}]")
                if required:
                    ladder.builder.find(
                        "INDEX_UNCHECKED",
                        f"amcheck could not check index {name}: {reason} [{state}]",
                        subject=name,
                        detail={"index": name, "sqlstate": state, "error": reason},
                    )
            continue
        ladder.builder.checked()
        checked += 1
    facts: dict[str, Any] = {
        "amcheck": how,
        "indexes": len(outcomes),
        "indexes_checked": checked,
        "indexes_corrupt": corrupt,
    }
    if unchecked:
        # Every unchecked index is named in the evidence (findings carry them too when required).
        facts["indexes_unchecked"] = unchecked
    return facts


def run(ladder: Ladder, ph: PhaseHandle) -> None:
    """Check sequences, materialized views and (with amcheck) B-tree indexes."""
    facts: dict[str, Any] = {}
    checks_before = ladder.builder.checks_run
    findings_before = len(ladder.builder.findings)
    facts.update(check_sequences(ladder))
    facts.update(check_matviews(ladder))
    if ladder.verify.amcheck is not False:
        reads = ladder.prefetched
        btree = reads.result(reads.btree) if reads is not None and reads.btree is not None else None
        facts.update(check_indexes(ladder, btree))
    else:
        facts["amcheck"] = "off (verify.amcheck: false)"
    ladder.facts["integrity"] = facts
    if ladder.builder.checks_run == checks_before and len(ladder.builder.findings) == findings_before:
        ph.skip("nothing to check")  # a blocking finding (amcheck demanded) keeps the phase "ok" for _settle
    parts = [sequences.describe(facts), f"{facts['matviews']} matviews"]
    if "indexes" in facts:
        parts.append(f"{facts['indexes_checked']}/{facts['indexes']} B-tree indexes checked with amcheck")
        if facts.get("indexes_unchecked"):
            parts.append(f"{len(facts['indexes_unchecked'])} could not be checked")
    else:
        parts.append(str(facts["amcheck"]))
    ph.detail = "; ".join(parts)
