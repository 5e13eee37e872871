"""Tell servers apart by what each says about itself, not by how a DSN spells it.

Rule this module enforces: two connections reach one server when the servers
report the same ``pg_control_system().system_identifier`` and
``pg_postmaster_start_time()`` (both executable by PUBLIC on PostgreSQL 15 and
16), so a unix socket, an alias, ``hostaddr`` or ``localhost`` vs ``127.0.0.1``
cannot dress one server up as another (used by the scratch guard, scratch.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ServerIdentity:
    """What a server says about itself; two connections reach one server when these are equal."""

    system_identifier: int | None
    started_at: datetime
    port: str
    database: str

    def same_server(self, other: ServerIdentity) -> bool:
        # A clone restored from the source's base backup shares system_identifier but not its
        # start time; one server reached twice shares both. Without system_identifier (EXECUTE
        # revoked), start time to the microsecond and port still tell servers apart.
        if (
            self.system_identifier is not None
            and other.system_identifier is not None
            and self.system_identifier != other.system_identifier
        ):
            return False
        return self.started_at == other.started_at and self.port == other.port


def server_identity(conn: Any) -> ServerIdentity:
    """Ask the server behind ``conn`` who it is (needs no privilege beyond CONNECT)."""
    row = conn.execute(
        "select pg_postmaster_start_time(), current_setting('port'), current_database()"
    ).fetchone()
    sysid = None
    try:
        with conn.transaction():
            got = conn.execute("select system_identifier from pg_control_system()").fetchone()
            sysid = int(got[0]) if got else None
    except Exception as exc:  # EXECUTE revoked by an administrator: start time and port still identify
        if type(exc).__name__ != "InsufficientPrivilege":
            raise
    return ServerIdentity(system_identifier=sysid, started_at=row[0], port=str(row[1]), database=str(row[2]))
