"""The side-effect audit: what a drill changed on a shared scratch server outside its scratch database.

Rules this module enforces (principle 2, what a drill changed is audited):
- a snapshot lists the server's databases, roles (with their attributes,
  comments and per-role/per-database settings), role memberships,
  tablespaces, permanent replication slots and (PostgreSQL 15+) parameter
  grants, each keyed with its oid where it has one, so a dropped-and-recreated
  object counts as changed;
- databases named with the scratch prefix are left out: other drills create
  and drop theirs on the same server at the same time, and the drill's own
  is judged by the restore and the guard;
- any difference between the snapshot before the restore and the one after
  the teardown is ``SCRATCH_SIDE_EFFECT`` (high) naming the objects; nothing
  found here is ever dropped or changed (the guard drops only what drillbook
  created and marked): a human decides;
- the snapshot reads only catalogues every role may read (no pg_authid).
"""

from __future__ import annotations

from dataclasses import dataclass

from drillbook.drills.backup_restore.scratch import PREFIX
from drillbook.resources import pg

MAX_NAMED = 20

_QUERIES = {
    "database": "select 'database ' || quote_ident(datname), concat_ws(' ', oid, datdba, datallowconn, datconnlimit, "
    "datacl::text, shobj_description(oid, 'pg_database')) from pg_database where not starts_with(datname, %s)",
    "role": "select 'role ' || quote_ident(rolname), concat_ws(' ', oid, rolsuper, rolinherit, rolcreaterole, "
    "rolcreatedb, rolcanlogin, rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil, "
    "shobj_description(oid, 'pg_authid')) from pg_roles where %s = %s",
    "membership": "select 'membership ' || quote_ident(r.rolname) || ' in ' || quote_ident(g.rolname), "
    "concat_ws(' ', m.admin_option) from pg_auth_members m join pg_roles r on r.oid = m.member "
    "join pg_roles g on g.oid = m.roleid where %s = %s",
    "setting": "select 'setting ' || coalesce(quote_ident(d.datname), '*') || '/' || coalesce(quote_ident(r.rolname), '*'), "
    "array_to_string(s.setconfig, ',') from pg_db_role_setting s left join pg_database d on d.oid = s.setdatabase "
    "left join pg_roles r on r.oid = s.setrole where not starts_with(coalesce(d.datname, ''), %s)",
    "tablespace": "select 'tablespace ' || quote_ident(spcname), concat_ws(' ', oid, spcowner, spcacl::text) "
    "from pg_tablespace where %s = %s",
    # a permanent slot holds WAL on the server until someone drops it (the disk fills)
    "slot": "select 'replication slot ' || quote_ident(slot_name), concat_ws(' ', slot_type, plugin, database) "
    "from pg_replication_slots where not temporary and %s = %s",
}
# PostgreSQL 15+: GRANT SET/ALTER SYSTEM ON PARAMETER; a grant there outlives the drill
_PARAMETER_ACL = "select 'parameter grant ' || parname, paracl::text from pg_parameter_acl where %s = %s"


@dataclass(frozen=True)
class Snapshot:
    objects: dict[str, str]  # "role alice" -> its attributes


def snapshot(admin_dsn: str) -> Snapshot:
    """The server-wide objects visible from ``admin_dsn`` (see the module docstring)."""
    objects: dict[str, str] = {}
    with pg.connect(admin_dsn, autocommit=True) as conn:
        queries = list(_QUERIES.values())
        row = conn.execute("select to_regclass('pg_catalog.pg_parameter_acl') is not null").fetchone()
        if row and row[0]:
            queries.append(_PARAMETER_ACL)
        for sql in queries:
            params = (PREFIX,) if sql.count("%s") == 1 else (1, 1)
            for name, value in conn.execute(sql, params).fetchall():
                objects[name] = value or ""
    return Snapshot(objects=objects)


@dataclass(frozen=True)
class Difference:
    added: list[str]
    removed: list[str]
    changed: list[str]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def describe(self) -> str:
        parts = []
        for label, names in (
            ("appeared", self.added),
            ("disappeared", self.removed),
            ("changed", self.changed),
        ):
            if names:
                shown = ", ".join(names[:MAX_NAMED]) + (
                    f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
                )
                parts.append(f"{label}: {shown}")
        return "; ".join(parts)


def compare(before: Snapshot, after: Snapshot) -> Difference:
    b, a = before.objects, after.objects
    return Difference(
        added=sorted(set(a) - set(b)),
        removed=sorted(set(b) - set(a)),
        changed=sorted(k for k in set(a) & set(b) if a[k] != b[k]),
    )


def is_superuser(admin_dsn: str) -> bool:
    """True when the role of ``admin_dsn`` is a superuser."""
    with pg.connect(admin_dsn, autocommit=True) as conn:
        row = conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()
    return bool(row and row[0])
