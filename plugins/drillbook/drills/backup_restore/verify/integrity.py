"""Rung 4, integrity: sequences ahead of their columns, materialized views populated, indexes sound.

Rules this module enforces:
- every sequence owned by a column (``pg_depend`` deptype ``a`` for serial,
  ``i`` for identity) with a positive increment must be at or above the
  column's max, else the next insert collides: ``SEQUENCE_BEHIND``. A
  sequence with ``is_called = false`` has not handed out ``last_value`` yet, so
  its position is ``last_value - increment``. The values are read in batches
  of ``UNION ALL`` statements; ``max(column)`` uses the column's index when
  there is one;
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

from typing import TYPE_CHECKING, Any

from drillbook.drills.backup_restore.verify.catalog import (
    USER_SCHEMA_FILTER,
    not_extension_member,
    user_schema,
)

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.verify.ladder import Ladder
    from drillbook.drills.base import PhaseHandle

BATCH = 100
AMCHECK_SCHEMA = "drillbook_amcheck"
_NUMERIC_TYPES = ("int2", "int4", "int8", "numeric")

_OWNED_SEQUENCES_SQL = f"""
select sn.nspname, s.relname, tn.nspname, t.relname, a.attname, q.seqincrement
from pg_sequence q
join pg_class s on s.oid = q.seqrelid
join pg_namespace sn on sn.oid = s.relnamespace
join pg_depend d on d.classid = 'pg_class'::regclass and d.objid = s.oid
     and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')
join pg_class t on t.oid = d.refobjid
join pg_namespace tn on tn.oid = t.relnamespace
join pg_attribute a on a.attrelid = t.oid and a.attnum = d.refobjsubid
join pg_type ty on ty.oid = a.atttypid
where q.seqincrement > 0 and ty.typname in {_NUMERIC_TYPES} and {user_schema('sn')}
  and {not_extension_member('pg_class', 's.oid')}
order by 1, 2
"""

_MATVIEWS_SQL = f"""
select n.nspname || '.' || c.relname, m.ispopulated
from pg_matviews m
join pg_namespace n on n.nspname = m.schemaname
join pg_class c on c.relnamespace = n.oid and c.relname = m.matviewname
where {USER_SCHEMA_FILTER} and {not_extension_member('pg_class', 'c.oid')}
order by 1
"""

_BTREE_INDEXES_SQL = f"""
select i.oid::int8, n.nspname || '.' || i.relname
from pg_index x
join pg_class i on i.oid = x.indexrelid
join pg_am am on am.oid = i.relam
join pg_namespace n on n.oid = i.relnamespace
where am.amname = 'btree' and x.indisvalid and x.indisready and i.relpersistence <> 't'
  and {USER_SCHEMA_FILTER} and {not_extension_member('pg_class', 'x.indrelid')}
order by 2
"""


def check_sequences(ladder: Ladder) -> dict[str, Any]:
    """SEQUENCE_BEHIND for every owned sequence below the max of its column."""
    from psycopg import sql

    owned = ladder.conn.execute(_OWNED_SEQUENCES_SQL).fetchall()
    behind = 0
    for start in range(0, len(owned), BATCH):
        batch = owned[start : start + BATCH]
        parts = [
            sql.SQL(
                "select {i}::int, s.last_value::numeric, s.is_called, (select max({col})::numeric from {tbl}) from {seq} s"
            ).format(
                i=sql.Literal(start + k),
                col=sql.Identifier(col),
                tbl=sql.Identifier(tschema, table),
                seq=sql.Identifier(sschema, seq),
            )
            for k, (sschema, seq, tschema, table, col, _inc) in enumerate(batch)
        ]
        for i, last_value, is_called, col_max in ladder.conn.execute(sql.SQL(" union all ").join(parts)).fetchall():
            sschema, seq, tschema, table, col, increment = owned[i]
            ladder.builder.checked()
            position = last_value if is_called else last_value - increment
            if col_max is not None and col_max > position:
                behind += 1
                ladder.builder.find(
                    "SEQUENCE_BEHIND",
                    f"sequence {sschema}.{seq} is at {position} but {tschema}.{table}.{col} already holds {col_max}: "
                    f"the next {int(col_max - position)} inserts would collide",
                    subject=f"{sschema}.{seq}",
                    detail={"sequence": f"{sschema}.{seq}", "column": f"{tschema}.{table}.{col}",
                            "last_value": int(last_value), "is_called": bool(is_called), "column_max": int(col_max)},
                )
    return {"sequences": len(owned), "sequences_behind": behind}


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


def check_indexes(ladder: Ladder) -> dict[str, Any]:
    """INDEX_CORRUPT for every B-tree index amcheck rejects; unchecked indexes are only reported."""
    import psycopg
    from psycopg import sql

    required = ladder.verify.amcheck is True
    schema, how = _amcheck_schema(ladder.conn)
    if schema is None:
        if required:
            ladder.builder.find(
                "AMCHECK_UNAVAILABLE",
                f"verify.amcheck is true but no index could be checked: {how}",
                subject="amcheck",
                detail={"error": how},
            )
        return {"amcheck": how, "indexes_checked": 0}
    indexes = ladder.conn.execute(_BTREE_INDEXES_SQL).fetchall()
    statement = sql.SQL("select {fn}(%s::oid::regclass)").format(fn=sql.Identifier(schema, "bt_index_check"))
    checked, corrupt, unchecked = 0, 0, []
    for oid, name in indexes:
        try:
            ladder.conn.execute(statement, (oid,))
        except psycopg.Error as exc:
            state = getattr(exc, "sqlstate", None) or ""
            diag = getattr(exc, "diag", None)
            reason = (diag.message_primary if diag is not None and diag.message_primary else str(exc)).strip()
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
    facts: dict[str, Any] = {"amcheck": how, "indexes": len(indexes), "indexes_checked": checked,
                             "indexes_corrupt": corrupt}
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
        facts.update(check_indexes(ladder))
    else:
        facts["amcheck"] = "off (verify.amcheck: false)"
    ladder.facts["integrity"] = facts
    if ladder.builder.checks_run == checks_before and len(ladder.builder.findings) == findings_before:
        ph.skip("nothing to check")  # a blocking finding (amcheck demanded) keeps the phase "ok" for _settle
    parts = [f"{facts['sequences']} sequences", f"{facts['matviews']} matviews"]
    if "indexes" in facts:
        parts.append(f"{facts['indexes_checked']}/{facts['indexes']} B-tree indexes checked with amcheck")
        if facts.get("indexes_unchecked"):
            parts.append(f"{len(facts['indexes_unchecked'])} could not be checked")
    else:
        parts.append(str(facts["amcheck"]))
    ph.detail = "; ".join(parts)
