"""Run one backup-restore drill end to end and return its DrillResult.

Rules this module enforces:
- phases run in order (scratch, locate, fetch, inspect, restore, verify.*,
  measure, teardown), each timed; a finding that makes later phases
  meaningless (no backup, digest mismatch, unreadable or truncated archive,
  no fitting tool, restore that did not complete) stops the drill there;
  the scratch guard and the drop are scratch_phases.py's, locate and fetch
  artefact_phases.py's, inspect and restore restore_phases.py's;
- drillbook's own warm-up (the verify ladder's imports, GX and the suites) is a phase of
  its own, ``warm-up``, right after the scratch guard, and its seconds are not part of the
  RTO (see warmup.py); RTO is taken after the verify ladder, before measuring and teardown;
- teardown runs whatever happened, a stop signal included (``DRILL_INTERRUPTED``).
This module imports no Airflow: the DAG and the CLI both call
``run_backup_restore``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from drillbook.catalogue.common import format_duration
from drillbook.drills.backup_restore import audit, measure, prescan, tools
from drillbook.drills.backup_restore import locate as locate_mod
from drillbook.drills.backup_restore.archive import ArchiveInfo
from drillbook.drills.backup_restore.artefact_phases import fetch_phase, locate_phase
from drillbook.drills.backup_restore.catalogue import BackupRestoreDrill
from drillbook.drills.backup_restore.ephemeral import EphemeralCluster
from drillbook.drills.backup_restore.lifetime import Interrupted
from drillbook.drills.backup_restore.restore_phases import inspect_phase, restore_phase
from drillbook.drills.backup_restore.scratch import ScratchGuard
from drillbook.drills.backup_restore.scratch_phases import scratch_phase, teardown_phase
from drillbook.drills.backup_restore.warmup import warm_up
from drillbook.drills.base import ResultBuilder
from drillbook.errors import DrillAborted
from drillbook.resources import pg
from drillbook.result import DrillResult, Phase
from drillbook.safety.redact import redact, redact_obj
from drillbook.settings import DrillTimeouts

KIND = "backup_restore"
log = logging.getLogger(__name__)


class _Drill:
    """The state of one run; the phases are functions of it (``*_phases.py``), verify and measure methods."""

    def __init__(
        self,
        b: ResultBuilder,
        *,
        drill: BackupRestoreDrill,
        scratch_dsn: str,
        source_dsn: str | None,
        s3_client: Any,
        work_dir: Path,
        base_dir: Path | None,
        run_id: str,
        start: datetime,
        timeouts: DrillTimeouts | None = None,
    ):
        self.b = b
        self.timeouts = timeouts or DrillTimeouts()
        self.drill = drill
        self.scratch_dsn = scratch_dsn
        self.source_dsn = source_dsn
        self.s3_client = s3_client
        self.work_dir = work_dir
        self.base_dir = base_dir
        self.run_id = run_id
        self.start = start
        self.guard = ScratchGuard(scratch_dsn=scratch_dsn, source_dsn=source_dsn)
        self.scratch_db: str | None = None
        self.owns_scratch = False
        self.artefact: locate_mod.Artefact | None = None
        self.downloaded: Path | None = None
        self.info: ArchiveInfo | None = None
        self.tool: tools.Tool | None = None
        self.restored = False
        self.cluster: EphemeralCluster | None = None
        self.before: audit.Snapshot | None = None
        self.scan: prescan.Scan | None = None

    def abort(self, reason: str) -> NoReturn:
        raise DrillAborted(reason)

    # -- phases ----------------------------------------------------------------------
    def verify(self, previous: dict[str, Any] | None) -> None:
        assert self.scratch_db is not None
        try:
            from drillbook.drills.backup_restore.verify import run_ladder
        except ImportError as exc:
            with self.b.phase("verify") as ph:
                self.b.find("DRILL_CRASHED", f"the verify ladder is not installed: {exc}")
                ph.status = "failed"
            self.abort("verify")
        base = self.base_dir or Path.cwd()
        run_ladder(
            self.b,
            scratch_dsn=pg.with_dbname(self.scratch_dsn, self.scratch_db),
            verify=self.drill.verify,
            base_dir=base,
            previous=previous,
            source_server_version=self.info.server_version if self.info else None,
            timeouts=self.timeouts,
        )

    def measure(self, rto: float, previous: dict[str, Any] | None) -> None:
        assert self.scratch_db is not None and self.artefact is not None
        with self.b.phase("measure") as ph:
            probe = None
            sql = self.drill.verify.rpo_probe
            if sql:
                try:
                    probe = measure.run_rpo_probe(
                        scratch_db_dsn=pg.with_dbname(self.scratch_dsn, self.scratch_db), sql=sql
                    )
                except Exception as exc:
                    self.b.find(
                        "RPO_PROBE_FAILED",
                        f"rpo_probe failed: {type(exc).__name__}: {exc}",
                        subject=sql[:120],
                    )
                else:
                    if probe is None:
                        self.b.find(
                            "RPO_PROBE_FAILED",
                            "rpo_probe returned no timestamp (NULL or no row)",
                            subject=sql[:120],
                        )
            point, source = measure.recoverable_point(
                probe=probe,
                archive_time=self.info.created_at if self.info else None,
                object_time=self.artefact.modified,
            )
            rpo = max(0.0, (self.start - point).total_seconds()) if point else None
            m = self.b.measurements
            m.rto_seconds = round(rto, 3)
            m.rpo_seconds = round(rpo, 3) if rpo is not None else None
            m.values["rpo_source"] = source
            m.values["recoverable_point"] = point.isoformat() if point else None
            measure.add_objective_findings(
                self.b,
                rto=rto,
                rpo=rpo,
                rto_objective=self.drill.objectives.rto,
                rpo_objective=self.drill.objectives.rpo,
                rpo_source=source,
            )
            sentence = measure.trend(rto, previous)
            if sentence:
                self.b.details["trend"] = sentence
            ph.detail = f"RTO {format_duration(rto)}, RPO {format_duration(rpo)} ({source})" + (
                f"; {sentence}" if sentence else ""
            )

    def _s3(self) -> Any:
        if self.s3_client is None:
            import boto3

            self.s3_client = boto3.client("s3")
        return self.s3_client


def previous_pass(ledger: Any, drill: str) -> dict[str, Any] | None:
    """The result dict of the last PASS of ``drill`` in the ledger, or None."""
    if ledger is None:
        return None
    record = ledger.last_pass(kind=KIND, drill=drill)
    return dict(record.result) if record is not None else None


def run_backup_restore(
    *,
    drill: BackupRestoreDrill,
    scratch_dsn: str,
    work_dir: Path,
    source_dsn: str | None = None,
    s3_client: Any = None,
    scratch_db: str | None = None,
    run_id: str | None = None,
    base_dir: Path | None = None,
    previous: dict[str, Any] | None = None,
    ledger: Any = None,
    reaped: Sequence[str] = (),
    unregistered: Sequence[str] = (),
    reaped_clusters: Sequence[str] = (),
    on_phase: Callable[[Phase], None] | None = None,
    now: datetime | None = None,
    timeouts: DrillTimeouts | None = None,
) -> DrillResult:
    """Run ``drill`` once: restore its newest backup into scratch, verify, measure; see the module docstring.

    ``scratch_dsn`` points at the scratch server's maintenance database;
    ``scratch_db`` is a database created by ``ScratchGuard.create`` (the Airflow
    setup task) or None to create and drop one here. ``previous`` is the result
    dict of the last PASS (looked up in ``ledger`` when not given).
    """
    if (
        drill.backup.is_physical
    ):  # pgBackRest / Barman: a private cluster recovered from WAL, not a dump restore
        from drillbook.drills.backup_restore.physical.drill import run_physical

        if previous is None and ledger is not None:
            try:
                previous = previous_pass(ledger, drill.name)
            except Exception as exc:  # no trend is better than no drill
                log.warning(
                    "last PASS of %s not read from the ledger: %s: %s", drill.name, type(exc).__name__, exc
                )
        return run_physical(
            drill=drill,
            base_dir=base_dir,
            previous=previous,
            on_phase=on_phase,
            now=now,
            reaped_clusters=reaped_clusters,
            state_dir=work_dir / "physical-state",
        )
    b = ResultBuilder(
        kind=KIND,
        drill=drill.name,
        target=redact(drill.backup.where),
        controls=list(drill.controls),
        objectives={"rto_seconds": drill.objectives.rto, "rpo_seconds": drill.objectives.rpo},
        on_phase=on_phase,
    )
    start = now or b.started_at
    run = _Drill(
        b,
        drill=drill,
        scratch_dsn=scratch_dsn,
        source_dsn=source_dsn,
        s3_client=s3_client,
        work_dir=Path(work_dir),
        base_dir=base_dir,
        run_id=run_id or start.strftime("run_%Y%m%dT%H%M%S"),
        start=start,
        timeouts=timeouts,
    )
    for name in reaped:
        b.find("SCRATCH_REAPED", f"dropped scratch database {name!r} left by an earlier run", subject=name)
    for root in reaped_clusters:  # the reap task's (Airflow); the cluster's own start reports those it reaps
        b.find(
            "SCRATCH_REAPED",
            f"an ephemeral cluster left by a killed drill was stopped and removed: {root}",
            subject=root,
        )
    for name in unregistered:
        b.find(
            "SCRATCH_UNREGISTERED",
            f"database {name!r} has the scratch prefix but no row in drillbook's scratch "
            "registry: not dropped",
            subject=name,
        )
    warm_seconds = 0.0
    try:
        if previous is None and ledger is not None:
            try:
                previous = previous_pass(ledger, drill.name)
            except Exception as exc:  # no trend and no drift baseline is better than no drill
                log.warning(
                    "last PASS of %s not read from the ledger: %s: %s", drill.name, type(exc).__name__, exc
                )
                b.details["previous_pass"] = f"not read: {type(exc).__name__}"
        scratch_phase(run, scratch_db)
        # after the guard (a refusal still ends the drill first), before anything is restored
        warm_seconds = warm_up(
            b, suites=list(drill.verify.suites), suites_dir=(base_dir or Path.cwd()) / "expectations"
        )
        locate_phase(run, drill.restore.bin_dir)
        fetch_phase(run)
        inspect_phase(run, drill.restore.bin_dir)
        restore_phase(run)
        run.verify(previous)
        rto = b.elapsed() - warm_seconds  # RTO: restore and verification of the data, not drillbook's warm-up
        if not b.has_blocking():
            run.measure(rto, previous)
    except DrillAborted:
        pass
    except Interrupted as exc:  # SIGTERM/SIGINT: the tool's group is dead already; drop scratch, say so
        where = b.phases[-1].name if b.phases else "start"
        if b.phases:  # the phase's own bookkeeping saw no Exception and called it ok
            b.phases[-1].status, b.phases[-1].detail = "failed", f"interrupted by {exc.name}"
        b.find(
            "DRILL_INTERRUPTED",
            f"the drill was stopped by {exc.name} during or after phase {where!r}; "
            "nothing after it was checked",
            subject=where,
        )
        b.details["interrupted_by"] = exc.name
    finally:
        try:
            teardown_phase(run)
        except DrillAborted:
            pass
    from drillbook.drills.backup_restore.verify.suppress import apply_suppressions

    apply_suppressions(b, list(drill.verify.ignore))  # kept and shown; they stop driving the verdict
    b.details = redact_obj(b.details)
    return b.finish()
