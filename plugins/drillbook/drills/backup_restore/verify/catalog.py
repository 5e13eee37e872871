"""Read a database's user catalog into canonical, comparable JSON.

Rules this module enforces:
- the catalog is read with a handful of set-based queries (one per object
  kind), never one query per object, so a schema of thousands of objects reads
  in milliseconds;
- only user objects count: system schemas (``pg_catalog``,
  ``information_schema``, ``pg_toast*``, ``pg_temp*``) and objects that belong
  to an extension (``pg_depend.deptype = 'e'``) are left out, so installing
  amcheck in a scratch database never changes its structure;
- the output is canonical: keys sorted, signatures built from text that is
  stable across PostgreSQL major versions (``format_type``,
  ``pg_get_indexdef``, ``pg_get_constraintdef``, an md5 of a function's source
  text). View bodies are compared by their columns, not by
  ``pg_get_viewdef``, whose deparsed text changes between server versions.
"""

from __future__ import annotations

from typing import Any

from drillbook.drills.backup_restore.verify.catalog_sql import USER_SCHEMA_FILTER, not_extension_member

#: 2 added triggers, row security, policies, types, grants, extensions and the database's
#: collation; a format-1 file still loads and those sections are reported as not checked.
REFERENCE_FORMAT = 2
READABLE_FORMATS = (1, 2)


_RELKINDS = {"r": "table", "p": "table", "v": "view", "m": "materialized_view", "f": "foreign_table"}

_RELATIONS_SQL = f"""
select n.nspname || '.' || c.relname, c.relkind::text
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p', 'v', 'm', 'f') and {USER_SCHEMA_FILTER}
  and {not_extension_member("pg_class", "c.oid")}
"""

_COLUMNS_SQL = f"""
select n.nspname || '.' || c.relname, a.attname,
       format_type(a.atttypid, a.atttypmod)
         || case when a.attnotnull then ' not null' else '' end
         || case a.attidentity when 'a' then ' identity always' when 'd' then ' identity' else '' end
         || case when a.attgenerated = 's' then ' generated' else '' end
from pg_attribute a
join pg_class c on c.oid = a.attrelid
join pg_namespace n on n.oid = c.relnamespace
where a.attnum > 0 and not a.attisdropped and c.relkind in ('r', 'p', 'v', 'm', 'f')
  and {USER_SCHEMA_FILTER} and {not_extension_member("pg_class", "c.oid")}
"""

_INDEXES_SQL = f"""
select n.nspname || '.' || t.relname, i.relname, pg_get_indexdef(i.oid)
from pg_index x
join pg_class i on i.oid = x.indexrelid
join pg_class t on t.oid = x.indrelid
join pg_namespace n on n.oid = i.relnamespace
where {USER_SCHEMA_FILTER} and t.relkind in ('r', 'p', 'm') and {not_extension_member("pg_class", "t.oid")}
"""

# Not-null constraints (contype 'n', PostgreSQL 17+) are left out: the column
# signature already says "not null", and older servers have no such row.
_CONSTRAINTS_SQL = f"""
select n.nspname || '.' || t.relname, k.conname, pg_get_constraintdef(k.oid)
from pg_constraint k
join pg_class t on t.oid = k.conrelid
join pg_namespace n on n.oid = t.relnamespace
where k.conrelid <> 0 and k.contype <> 'n' and {USER_SCHEMA_FILTER}
  and {not_extension_member("pg_class", "t.oid")}
"""

_SEQUENCES_SQL = f"""
select n.nspname || '.' || c.relname,
       format_type(s.seqtypid, null) || ' increment ' || s.seqincrement
         || coalesce(' owned by ' || (
              select tn.nspname || '.' || t.relname || '.' || a.attname
              from pg_depend d
              join pg_class t on t.oid = d.refobjid
              join pg_namespace tn on tn.oid = t.relnamespace
              join pg_attribute a on a.attrelid = t.oid and a.attnum = d.refobjsubid
              where d.classid = 'pg_class'::regclass and d.objid = c.oid
                and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')
              limit 1), '')
from pg_sequence s
join pg_class c on c.oid = s.seqrelid
join pg_namespace n on n.oid = c.relnamespace
where {USER_SCHEMA_FILTER} and {not_extension_member("pg_class", "c.oid")}
"""

_FUNCTIONS_SQL = f"""
select n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       case p.prokind when 'p' then 'procedure' when 'a' then 'aggregate' when 'w' then 'window' else 'function' end
         || coalesce(' returns ' || pg_get_function_result(p.oid), '')
         || ' language ' || l.lanname || ' source md5 ' || md5(coalesce(p.prosrc, ''))
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
join pg_language l on l.oid = p.prolang
where {USER_SCHEMA_FILTER} and {not_extension_member("pg_proc", "p.oid")}
"""


def read_structure(conn: Any) -> dict[str, Any]:
    """Return the canonical structure of the database behind ``conn`` (a psycopg connection)."""
    # An empty search_path makes every deparsed name schema-qualified, so the
    # text does not depend on the session (``REFERENCES public.orders(id)``).
    with conn.transaction():
        conn.execute("set local search_path = ''")
        return _read(conn)


def _read(conn: Any) -> dict[str, Any]:
    relations: dict[str, dict[str, Any]] = {}
    for name, relkind in conn.execute(_RELATIONS_SQL).fetchall():
        kind = _RELKINDS[relkind]
        relations[name] = {"kind": kind, "columns": {}}
        if kind in {"table", "materialized_view"}:
            relations[name]["indexes"] = {}
        if kind == "table":
            relations[name]["constraints"] = {}
    for rel, column, signature in conn.execute(_COLUMNS_SQL).fetchall():
        if rel in relations:
            relations[rel]["columns"][column] = signature
    for rel, index, definition in conn.execute(_INDEXES_SQL).fetchall():
        if rel in relations:
            relations[rel].setdefault("indexes", {})[index] = definition
    for rel, constraint, definition in conn.execute(_CONSTRAINTS_SQL).fetchall():
        if rel in relations:
            relations[rel].setdefault("constraints", {})[constraint] = definition
    sequences = dict(conn.execute(_SEQUENCES_SQL).fetchall())
    functions = dict(conn.execute(_FUNCTIONS_SQL).fetchall())
    version = conn.execute("select current_setting('server_version_num')::int / 10000").fetchone()[0]
    from drillbook.drills.backup_restore.verify.catalog_objects import read_objects

    return canonical(
        {
            "drillbook_structure_reference": REFERENCE_FORMAT,
            "server_major_version": int(version),
            "relations": relations,
            "sequences": sequences,
            "functions": functions,
            **read_objects(conn),
        }
    )


def canonical(value: Any) -> Any:
    """Return ``value`` with every mapping's keys sorted (stable JSON and stable diffs)."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def flatten(structure: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """Map every object to ``(signature, parent)``; the key names its kind, e.g. ``index public.orders_pkey``.

    ``parent`` is the key of the relation a column, index or constraint belongs
    to, so a comparison can report a missing table once instead of once per column.
    """
    flat: dict[str, tuple[str, str | None]] = {}
    for rel, body in structure.get("relations", {}).items():
        kind = body.get("kind", "table")
        parent = f"{kind} {rel}"
        flat[parent] = ("", None)
        for column, signature in body.get("columns", {}).items():
            flat[f"column {rel}.{column}"] = (signature, parent)
        schema = rel.split(".", 1)[0]
        for index, definition in body.get("indexes", {}).items():
            flat[f"index {schema}.{index}"] = (definition, parent)
        for constraint, definition in body.get("constraints", {}).items():
            flat[f"constraint {rel}.{constraint}"] = (definition, parent)
    for seq, signature in structure.get("sequences", {}).items():
        flat[f"sequence {seq}"] = (signature, None)
    for fn, signature in structure.get("functions", {}).items():
        flat[f"function {fn}"] = (signature, None)
    from drillbook.drills.backup_restore.verify.catalog_objects import flatten_objects

    flatten_objects(structure, flat)
    return flat


def user_tables(structure: dict[str, Any]) -> list[str]:
    """Names of the user tables (plain and partitioned) in a structure."""
    return sorted(rel for rel, body in structure.get("relations", {}).items() if body.get("kind") == "table")
