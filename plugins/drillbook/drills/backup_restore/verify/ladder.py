"""Run the verify ladder on a restored scratch database: one timed phase per rung.

Rules this module enforces:
- the rungs run in a fixed order (structure, server, volume, semantics,
  integrity, quality) and each is its own phase ``verify.<rung>`` with status ``ok``,
  ``failed`` (the rung added a finding at or above ``medium``) or ``not
  configured`` (nothing to compare against; such a rung counts no check);
- one connection serves the whole ladder, opened lazily, with a session
  ``statement_timeout`` and ``lock_timeout`` so no rung can hang forever; it is
  the scratch database, never a source, yet the rungs only read from it
  (integrity may create the ``amcheck`` extension there: that is the one write);
- a scratch server that cannot be reached is ``SCRATCH_UNREACHABLE`` (ERROR),
  not a crash; any other exception in a rung becomes ``DRILL_CRASHED`` through
  ``ResultBuilder.phase`` and ends the ladder with ``DrillAborted``;
- ``verify.tier`` below ``full`` skips or narrows rungs (see ``tiers.py``)
  and is always reported as partial, never as a full PASS.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drillbook.errors import DrillAborted
from drillbook.result import Severity
from drillbook.settings import DrillTimeouts

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.catalogue import VerifySpec
    from drillbook.drills.backup_restore.verify.prefetch import DatabaseReads
    from drillbook.drills.base import PhaseHandle, ResultBuilder

#: Upper bound of any single ladder query (row counts of very large tables included).
LOCK_TIMEOUT_S = 60


def table_in_scope(verify: VerifySpec, table: str) -> bool:
    """True when the tier reads ``schema.table``'s data (always, except for tier sample's other tables)."""
    if verify.tier != "sample":
        return True
    return table in {t if "." in t else f"public.{t}" for t in verify.tables}


class ScratchSession:
    """The ladder's one connection to the scratch database, opened on first use."""

    def __init__(self, *, dsn: str, statement_timeout_s: int = 3600):
        self.dsn = dsn
        self.statement_timeout_s = statement_timeout_s

    @cached_property
    def conn(self) -> Any:
        from drillbook.resources.pg import connect

        conn = connect(self.dsn, autocommit=True, application_name="drillbook-verify")
        conn.execute(f"set statement_timeout = '{int(self.statement_timeout_s)}s'")
        conn.execute(f"set lock_timeout = '{LOCK_TIMEOUT_S}s'")
        return conn

    def close(self) -> None:
        if "conn" in self.__dict__:
            self.__dict__.pop("conn").close()


class Ladder:
    """Everything a rung needs: the builder, the session, the spec and the shared facts."""

    def __init__(
        self,
        *,
        builder: ResultBuilder,
        session: ScratchSession,
        verify: VerifySpec,
        base_dir: Path,
        previous: dict[str, Any] | None,
        source_server_version: str | None = None,
        check_timeout_s: int = 300,
        prefetched: DatabaseReads | None = None,
    ):
        self.builder = builder
        #: reads started earlier on connections of their own (prefetch.py); the rungs record them
        self.prefetched = prefetched
        self.check_timeout_s = check_timeout_s
        self.source_server_version = source_server_version
        self.session = session
        self.verify = verify
        self.base_dir = Path(base_dir)
        self.previous = previous
        self.facts: dict[str, Any] = builder.details.setdefault("verify", {})
        #: What one rung hands to a later one (the restored structure, the reference); never recorded.
        self.shared: dict[str, Any] = {}

    @property
    def conn(self) -> Any:
        return self.session.conn

    def in_scope(self, table: str) -> bool:
        """True when the tier reads ``schema.table``'s data (always, except for tier sample's other tables)."""
        return table_in_scope(self.verify, table)

    @property
    def dsn(self) -> str:
        return self.session.dsn


Rung = Callable[[Ladder, "PhaseHandle"], None]


def _settle(builder: ResultBuilder, ph: PhaseHandle, before: int) -> None:
    """Mark the phase failed when the rung added a finding at or above medium."""
    new = builder.findings[before:]
    if any(f.severity.at_least(Severity.MEDIUM) for f in new) and ph.status == "ok":
        ph.status = "failed"
        codes = sorted({f.code for f in new if f.severity.at_least(Severity.MEDIUM)})
        ph.detail = (ph.detail + "; " if ph.detail else "") + ", ".join(codes)


def _connect_or_abort(ladder: Ladder) -> None:
    import psycopg

    try:
        ladder.conn  # noqa: B018 - opening the connection is the point
    except psycopg.OperationalError as exc:
        from drillbook.resources.pg import describe

        ladder.builder.find(
            "SCRATCH_UNREACHABLE",
            f"the restored scratch database {describe(ladder.dsn)} could not be reached to verify it: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
            subject=describe(ladder.dsn),
        )
        raise DrillAborted("verify.structure") from exc


def run_ladder(
    builder: ResultBuilder,
    *,
    scratch_dsn: str,
    verify: VerifySpec,
    base_dir: Path,
    previous: dict[str, Any] | None,
    source_server_version: str | None = None,
    timeouts: DrillTimeouts | None = None,
    prefetched: DatabaseReads | None = None,
) -> None:
    """Verify the restored data rung by rung; findings, checks and facts go into ``builder``.

    ``source_server_version`` is the dump header's server version (``ArchiveInfo.server_version``).
    ``prefetched``: the volume count and B-tree checks already started on connections of their own
    (prefetch.py); the rungs wait for them instead of reading again.
    """
    from drillbook.drills.backup_restore.verify import (
        integrity,
        quality,
        semantics,
        server,
        structure,
        volume,
    )
    from drillbook.drills.backup_restore.verify.tiers import report_partial, skipped_by_tier

    timeouts = timeouts or DrillTimeouts()
    session = ScratchSession(dsn=scratch_dsn, statement_timeout_s=timeouts.verify_statement)
    ladder = Ladder(
        builder=builder,
        session=session,
        verify=verify,
        base_dir=base_dir,
        previous=previous,
        source_server_version=source_server_version,
        check_timeout_s=timeouts.check,
        prefetched=prefetched,
    )
    rungs: list[tuple[str, Rung]] = [
        ("verify.structure", structure.run),
        ("verify.server", server.run),
        ("verify.volume", volume.run),
        ("verify.semantics", semantics.run),
        ("verify.integrity", integrity.run),
        ("verify.quality", quality.run),
    ]
    try:
        for name, rung in rungs:
            with builder.phase(name) as ph:
                if name == "verify.structure":
                    _connect_or_abort(ladder)
                why = skipped_by_tier(verify, name)
                if why:
                    ph.skip(why)
                    continue
                before = len(builder.findings)
                rung(ladder, ph)
                _settle(builder, ph, before)
        report_partial(ladder)
    finally:
        session.close()
