"""The ``pg_ping`` kind: catalogue model, run, one catalogue check; registered by one line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from drillbook.catalogue.common import ConnId, DrillBase
from drillbook.drills.registry import DrillKind, Problem, Resources, RunSpec
from drillbook.result import DrillResult


class PgPingDrill(DrillBase):
    kind: Literal["pg_ping"]
    connection: ConnId
    timeout: int = Field(default=5, ge=1, le=60)  # seconds to wait for the server


def run(spec: RunSpec, resources: Resources) -> list[DrillResult]:
    """Connect with the drill's connection and run ``SELECT 1``; unreachable is an ERROR, never a pass."""
    import psycopg

    from drillbook.drills.base import ResultBuilder
    from drillbook.errors import ConnectionNotConfigured

    drill: Any = spec.drill
    b = ResultBuilder(
        kind="pg_ping",
        drill=drill.name,
        target=drill.connection,
        controls=list(drill.controls),
        on_phase=spec.on_phase,
    )
    with b.phase("ping"):
        try:
            with psycopg.connect(resources.dsn(drill.connection), connect_timeout=drill.timeout) as conn:
                conn.execute("SELECT 1").fetchone()
                b.checked()
        except ConnectionNotConfigured as exc:
            b.find("CONNECTION_MISSING", str(exc), subject=drill.connection)
        except psycopg.Error as exc:
            b.find(
                "SOURCE_UNREACHABLE", f"{drill.connection!r}: {type(exc).__name__}", subject=drill.connection
            )
    return [b.finish()]


def not_the_ledger(drill: Any, catalogue: Any) -> Iterator[Problem]:
    """Pinging the ledger proves nothing about the targets: refuse it."""
    if drill.connection == catalogue.defaults.ledger_connection:
        yield (("connection",), f"{drill.connection!r} is the ledger's connection; ping a target instead")


KIND = DrillKind(
    name="pg_ping",
    model=PgPingDrill,
    summary="connect to PostgreSQL and run SELECT 1",
    run="tests.foundation.kinds.pg_ping.kind:run",
    checks=("tests.foundation.kinds.pg_ping.kind:not_the_ledger",),
)
