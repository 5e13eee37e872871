"""The SQL conditions that say which catalog objects are the user's, shared by every catalog reader.

Rule this module enforces: system schemas (``pg_catalog``, ``information_schema``, ``pg_toast*``,
``pg_temp*``) and objects that belong to an extension (``pg_depend.deptype = 'e'``) are never
counted as user objects, by any rung; ``catalog``, ``catalog_objects``, ``integrity``,
``sequences`` and ``volume`` all build their queries from these conditions. It imports nothing,
so the catalog readers depend on it and not on each other.
"""

from __future__ import annotations


def user_schema(alias: str = "n") -> str:
    """SQL condition: namespace ``alias`` is a user schema (not system, toast or temp)."""
    return (
        f"{alias}.nspname not in ('pg_catalog', 'information_schema') "
        f"and {alias}.nspname not like 'pg\\_toast%' and {alias}.nspname not like 'pg\\_temp\\_%'"
    )


def not_extension_member(classid: str, objid: str) -> str:
    """SQL condition: object ``objid`` of catalog ``classid`` does not belong to an extension."""
    return (
        f"not exists (select 1 from pg_depend e where e.classid = '{classid}'::regclass "
        f"and e.objid = {objid} and e.deptype = 'e')"
    )


USER_SCHEMA_FILTER = user_schema("n")
