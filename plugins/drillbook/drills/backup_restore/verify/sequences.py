"""Integrity of sequences: every sequence ahead of every column it feeds, and none unaccounted for.

Rules this module enforces:
- a sequence feeds a column when the column is an identity column
  (``pg_depend`` deptype ``i``), when the sequence is ``OWNED BY`` it
  (deptype ``a``), or when the column's ``DEFAULT`` calls ``nextval`` on it
  (the default expression in ``pg_attrdef`` depends on the sequence, deptype
  ``n``). The link is read from the catalog by oid, never by parsing the
  default's text, so a schema-qualified or quoted name (``nextval('"Sales"."Seq"')``)
  is found just like ``nextval('s')``. This is how pagila links all of its
  sequences: ``OWNED BY`` alone missed every one of them;
- for each (sequence, column) pair with a numeric column the position
  (``last_value``, or ``last_value - increment`` before the first
  ``nextval``) must be at or above ``max(column)`` for an ascending sequence
  and at or below ``min(column)`` for a descending one, else the next insert
  collides: ``SEQUENCE_BEHIND``;
- a sequence no column uses, or one that feeds only a non-numeric column,
  cannot be checked against any data: ``SEQUENCE_UNCHECKED`` (medium), named;
  the phase detail says how many sequences exist, how many were checked and
  how each was linked, so "0 checked" never reads like "there are none".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drillbook.drills.backup_restore.verify.catalog_sql import not_extension_member, user_schema

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.verify.ladder import Ladder

BATCH = 100
_NUMERIC_TYPES = ("int2", "int4", "int8", "numeric")

_SEQUENCE_LINKS_SQL = f"""
with links as (
    select d.objid as seq, d.refobjid as rel, d.refobjsubid as att,
           case d.deptype when 'i' then 'identity' else 'owned by' end as how
    from pg_depend d
    where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass
      and d.deptype in ('a', 'i') and d.refobjsubid > 0
    union
    select d.refobjid, ad.adrelid, ad.adnum, 'default nextval'
    from pg_depend d join pg_attrdef ad on ad.oid = d.objid
    where d.classid = 'pg_attrdef'::regclass and d.refclassid = 'pg_class'::regclass and d.deptype = 'n'
)
select sn.nspname, s.relname, q.seqincrement, tn.nspname, t.relname, a.attname, ty.typname,
       string_agg(l.how, ', ' order by l.how)
from pg_sequence q
join pg_class s on s.oid = q.seqrelid
join pg_namespace sn on sn.oid = s.relnamespace
left join links l on l.seq = q.seqrelid
left join pg_class t on t.oid = l.rel
left join pg_namespace tn on tn.oid = t.relnamespace
left join pg_attribute a on a.attrelid = l.rel and a.attnum = l.att
left join pg_type ty on ty.oid = a.atttypid
where {user_schema("sn")} and {not_extension_member("pg_class", "s.oid")}
group by 1, 2, 3, 4, 5, 6, 7
order by 1, 2, 4, 5, 6
"""


def check_sequences(ladder: Ladder) -> dict[str, Any]:
    """SEQUENCE_BEHIND for a sequence behind a column it feeds; SEQUENCE_UNCHECKED for one that feeds none."""
    rows = ladder.conn.execute(_SEQUENCE_LINKS_SQL).fetchall()
    names = {f"{r[0]}.{r[1]}" for r in rows}
    pairs = [
        r
        for r in rows
        if r[3] is not None and r[6] in _NUMERIC_TYPES and r[2] != 0 and ladder.in_scope(f"{r[3]}.{r[4]}")
    ]
    linked = {f"{r[0]}.{r[1]}" for r in rows if r[3] is not None}
    only_default = {f"{r[0]}.{r[1]}" for r in rows if r[7] == "default nextval"}
    unchecked = 0
    for sschema, seq, _inc, tschema, table, col, typname, how in rows:
        name = f"{sschema}.{seq}"
        if tschema is None and name not in linked:
            unchecked += 1
            ladder.builder.find(
                "SEQUENCE_UNCHECKED",
                f"sequence {name} is used by no column (no OWNED BY, identity or DEFAULT nextval): "
                "its position cannot be checked against any data",
                subject=name,
                detail={"sequence": name, "linked": "none"},
            )
        elif tschema is not None and typname not in _NUMERIC_TYPES:
            unchecked += 1
            ladder.builder.find(
                "SEQUENCE_UNCHECKED",
                f"sequence {name} feeds {tschema}.{table}.{col} of type {typname} ({how}): "
                "a non-numeric column cannot be compared with the sequence",
                subject=name,
                detail={"sequence": name, "column": f"{tschema}.{table}.{col}", "linked": how},
            )
    behind = _compare(ladder, pairs)
    return {
        "sequences": len(names),
        "sequences_linked": len(linked),
        "sequences_linked_only_by_default": len(only_default),
        "sequence_columns_checked": len(pairs),
        "sequences_unchecked": unchecked,
        "sequences_behind": behind,
    }


def _compare(ladder: Ladder, pairs: list[tuple[Any, ...]]) -> int:
    from psycopg import sql

    behind = 0
    for start in range(0, len(pairs), BATCH):
        batch = pairs[start : start + BATCH]
        parts = [
            sql.SQL(
                "select {i}::int, s.last_value::numeric, s.is_called, (select {agg}({col})::numeric from {tbl}) from {seq} s"
            ).format(
                i=sql.Literal(start + k),
                agg=sql.SQL("max" if inc > 0 else "min"),
                col=sql.Identifier(col),
                tbl=sql.Identifier(tschema, table),
                seq=sql.Identifier(sschema, seq),
            )
            for k, (sschema, seq, inc, tschema, table, col, _typ, _how) in enumerate(batch)
        ]
        for i, last_value, is_called, extreme in ladder.conn.execute(
            sql.SQL(" union all ").join(parts)
        ).fetchall():
            sschema, seq, increment, tschema, table, col, _typ, how = pairs[i]
            ladder.builder.checked()
            position = last_value if is_called else last_value - increment
            if extreme is None or (extreme <= position if increment > 0 else extreme >= position):
                continue
            behind += 1
            held = "max" if increment > 0 else "min"
            ladder.builder.find(
                "SEQUENCE_BEHIND",
                f"sequence {sschema}.{seq} is at {position} but {tschema}.{table}.{col} ({how}) already holds "
                f"{extreme}: the next {abs(int((extreme - position) / increment))} inserts would collide",
                subject=f"{sschema}.{seq}",
                detail={
                    "sequence": f"{sschema}.{seq}",
                    "column": f"{tschema}.{table}.{col}",
                    "linked": how,
                    "last_value": int(last_value),
                    "is_called": bool(is_called),
                    f"column_{held}": int(extreme),
                },
            )
    return behind


def describe(facts: dict[str, Any]) -> str:
    """One phrase for the phase detail: what was found, not only what was checked."""
    total = facts["sequences"]
    if not total:
        return "no sequences in the restored database"
    text = (
        f"{total} sequences found, {facts['sequences_linked']} linked to a column "
        f"({facts['sequences_linked_only_by_default']} only by DEFAULT nextval), "
        f"{facts['sequence_columns_checked']} sequence/column pairs checked"
    )
    if facts["sequences_unchecked"]:
        text += f", {facts['sequences_unchecked']} could not be checked"
    return text
