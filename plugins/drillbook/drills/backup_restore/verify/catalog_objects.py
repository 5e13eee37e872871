"""Read what a restore can drop without an error: triggers, RLS, types, grants, extensions, collation.

Rules this module enforces (reference format 2; ``catalog.py`` reads the relations):
- each section is read with one set-based query and keyed by a stable,
  schema-qualified name: triggers and policies by ``schema.table.name``,
  row-level security by table, types by ``schema.name``, grants by
  ``table|sequence|schema|default`` plus the object, extensions by name;
- a trigger's signature carries whether it fires (``tgenabled``): a trigger
  restored disabled differs from the reference just like a dropped one;
- a table's row security is ``on``/``off`` plus ``forced``: policies kept with
  RLS switched off are a difference, not a match;
- enum labels keep their order (``enumsortorder``): ``('a','b')`` and
  ``('b','a')`` sort differently;
- grants are compared by grantee and privileges, never by grantor, and the
  owner's own implicit privileges are left out: a restore with ``--no-owner``
  changes the owner, which the reference must not call a lost GRANT;
- the database's collation (provider, collate, ctype, ICU locale, version) is
  read with ``to_jsonb(pg_database)`` so the column names of any major
  (``daticulocale`` in 15/16, ``datlocale`` in 17) are found without a
  version switch; it is compared by ``collation.py``, not by the diff.
"""

from __future__ import annotations

from typing import Any

from drillbook.drills.backup_restore.verify.catalog_sql import USER_SCHEMA_FILTER, not_extension_member

#: Sections of format 2; a reference without one of them did not record it (not checked).
SECTIONS = ("triggers", "row_security", "policies", "types", "grants", "extensions")

_TRIGGERS_SQL = f"""
select n.nspname || '.' || c.relname, t.tgname,
       case t.tgenabled when 'O' then 'enabled' when 'D' then 'disabled'
                        when 'R' then 'enabled replica' when 'A' then 'enabled always' end
         || ': ' || pg_get_triggerdef(t.oid)
from pg_trigger t
join pg_class c on c.oid = t.tgrelid
join pg_namespace n on n.oid = c.relnamespace
where not t.tgisinternal and {USER_SCHEMA_FILTER} and {not_extension_member("pg_class", "c.oid")}
"""

_ROW_SECURITY_SQL = f"""
select n.nspname || '.' || c.relname,
       case when c.relrowsecurity then 'on' else 'off' end
         || case when c.relforcerowsecurity then ' forced' else '' end
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p') and {USER_SCHEMA_FILTER} and {not_extension_member("pg_class", "c.oid")}
"""

_POLICIES_SQL = f"""
select n.nspname || '.' || c.relname, p.polname,
       case when p.polpermissive then 'permissive' else 'restrictive' end
         || ' for ' || case p.polcmd when 'r' then 'select' when 'a' then 'insert' when 'w' then 'update'
                                     when 'd' then 'delete' else 'all' end
         || ' to ' || coalesce((select string_agg(case when r = 0 then 'public' else pg_get_userbyid(r)::text end,
                                                  ',' order by 1)
                                from unnest(p.polroles) r), 'public')
         || coalesce(' using (' || pg_get_expr(p.polqual, p.polrelid) || ')', '')
         || coalesce(' with check (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')', '')
from pg_policy p
join pg_class c on c.oid = p.polrelid
join pg_namespace n on n.oid = c.relnamespace
where {USER_SCHEMA_FILTER}
"""

_TYPES_SQL = f"""
select n.nspname || '.' || t.typname,
       case t.typtype
         when 'e' then 'enum (' || coalesce((select string_agg(quote_literal(e.enumlabel), ', ' order by e.enumsortorder)
                                             from pg_enum e where e.enumtypid = t.oid), '') || ')'
         when 'd' then 'domain over ' || format_type(t.typbasetype, t.typtypmod)
                        || case when t.typnotnull then ' not null' else '' end
                        || coalesce(' ' || (select string_agg(pg_get_constraintdef(k.oid), ' ' order by k.conname)
                                            from pg_constraint k where k.contypid = t.oid), '')
         when 'c' then 'composite (' || coalesce((select string_agg(quote_ident(a.attname) || ' '
                                                    || format_type(a.atttypid, a.atttypmod), ', ' order by a.attnum)
                                                  from pg_attribute a
                                                  where a.attrelid = t.typrelid and a.attnum > 0
                                                    and not a.attisdropped), '') || ')'
         when 'r' then 'range'
       end
from pg_type t
join pg_namespace n on n.oid = t.typnamespace
where t.typtype in ('e', 'd', 'c', 'r')
  and (t.typtype <> 'c' or (select c.relkind from pg_class c where c.oid = t.typrelid) = 'c')
  and {USER_SCHEMA_FILTER} and {not_extension_member("pg_type", "t.oid")}
"""

# aclexplode gives one row per (grantee, privilege); the owner's own rows are left out.
_GRANTEE = "case when x.grantee = 0 then 'public' else pg_get_userbyid(x.grantee)::text end"
_ITEM = f"{_GRANTEE} || ':' || x.privilege_type || case when x.is_grantable then '*' else '' end"
_GRANTS_SQL = f"""
with items(object, item) as (
    select case c.relkind when 'S' then 'sequence ' else 'table ' end || n.nspname || '.' || c.relname, {_ITEM}
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    cross join lateral aclexplode(c.relacl) x
    where c.relacl is not null and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S') and x.grantee <> c.relowner
      and {USER_SCHEMA_FILTER} and {not_extension_member("pg_class", "c.oid")}
    union all
    select 'schema ' || n.nspname, {_ITEM}
    from pg_namespace n
    cross join lateral aclexplode(n.nspacl) x
    where n.nspacl is not null and x.grantee <> n.nspowner and {USER_SCHEMA_FILTER}
      and {not_extension_member("pg_namespace", "n.oid")}
    union all
    select 'default ' || pg_get_userbyid(d.defaclrole)::text || coalesce(' in ' || n.nspname, '') || ' on '
             || case d.defaclobjtype when 'r' then 'tables' when 'S' then 'sequences' when 'f' then 'functions'
                                     when 'T' then 'types' when 'n' then 'schemas' else d.defaclobjtype::text end,
           coalesce({_ITEM}, '(none)')
    from pg_default_acl d
    left join pg_namespace n on n.oid = d.defaclnamespace
    left join lateral aclexplode(d.defaclacl) x on true
)
select object, string_agg(distinct item, ' ' order by item) from items group by object
"""

_EXTENSIONS_SQL = "select extname, extversion from pg_extension"

_DATABASE_SQL = """
select to_jsonb(d), pg_encoding_to_char(d.encoding),
       current_setting('server_version_num')::int
from pg_database d where d.datname = current_database()
"""


def read_objects(conn: Any) -> dict[str, Any]:
    """Return the format-2 sections (and ``database``) of ``conn``'s database; search_path must be empty."""
    triggers: dict[str, str] = {}
    for rel, name, signature in conn.execute(_TRIGGERS_SQL).fetchall():
        triggers[f"{rel}.{name}"] = signature
    policies: dict[str, str] = {}
    for rel, name, signature in conn.execute(_POLICIES_SQL).fetchall():
        policies[f"{rel}.{name}"] = signature
    return {
        "triggers": triggers,
        "row_security": dict(conn.execute(_ROW_SECURITY_SQL).fetchall()),
        "policies": policies,
        "types": dict(conn.execute(_TYPES_SQL).fetchall()),
        "grants": dict(conn.execute(_GRANTS_SQL).fetchall()),
        # amcheck is installed by the integrity rung itself; it is never part of what was restored
        "extensions": {k: v for k, v in conn.execute(_EXTENSIONS_SQL).fetchall() if k != "amcheck"},
        "database": read_database(conn),
    }


def read_database(conn: Any) -> dict[str, Any]:
    """The database's encoding and collation: provider, collate, ctype, ICU locale, version (None if unknown)."""
    row, encoding, version_num = conn.execute(_DATABASE_SQL).fetchone()
    provider = {"c": "libc", "i": "icu", "b": "builtin"}.get(row.get("datlocprovider") or "c", "libc")
    actual = None
    if int(version_num) >= 150000:
        actual = conn.execute(
            "select pg_database_collation_actual_version(oid) from pg_database where datname = current_database()"
        ).fetchone()[0]
    return {
        "encoding": encoding,
        "collation_provider": provider,
        "collate": row.get("datcollate"),
        "ctype": row.get("datctype"),
        "icu_locale": row.get("daticulocale") or row.get("datlocale") if provider != "libc" else None,
        "collation_version": actual or row.get("datcollversion"),
    }


def flatten_objects(structure: dict[str, Any], into: dict[str, tuple[str, str | None]]) -> None:
    """Add the format-2 sections to a flattened structure; table-bound objects get the table as parent."""
    tables = {
        rel: f"{body.get('kind', 'table')} {rel}" for rel, body in structure.get("relations", {}).items()
    }
    for key, signature in structure.get("triggers", {}).items():
        rel = key.rsplit(".", 1)[0]
        into[f"trigger {key}"] = (signature, tables.get(rel))
    for key, signature in structure.get("policies", {}).items():
        rel = key.rsplit(".", 1)[0]
        into[f"policy {key}"] = (signature, tables.get(rel))
    for rel, signature in structure.get("row_security", {}).items():
        into[f"row security {rel}"] = (signature, tables.get(rel))
    for name, signature in structure.get("types", {}).items():
        into[f"type {name}"] = (signature, None)
    for name, signature in structure.get("grants", {}).items():
        kind, _, obj = name.partition(" ")
        into[f"grant on {name}"] = (signature, tables.get(obj) if kind == "table" else None)
    for name, version in structure.get("extensions", {}).items():
        into[f"extension {name}"] = (f"version {version}", None)
