"""Run one physical-backup drill: locate, check the archive, restore, recover to the target, prove, verify, measure.

Rules this module enforces:
- phases run in order, each timed: ``locate``, ``archive``, ``restore``,
  ``safety`` (restore_phases.py), ``recover``, ``pitr_proof``
  (recover_phases.py), the verify ladder per database (verify_phases.py),
  ``measure``, ``teardown``; a finding that makes later phases meaningless
  stops the drill;
- RTO is from drill start to the end of the verify ladder; RPO is measured
  from the last transaction recovery replayed
  (``pg_last_xact_replay_timestamp()`` before promotion): against the target
  time for a time target, against the drill's start for ``latest`` (what a
  failover now would lose), and from the backup's end when no transaction was
  replayed after it; never from the backup's age;
- the cluster is stopped whatever happened, before the drill returns, and its
  directory removed: renamed ``drillbook-removing-*`` and unlinked on a thread
  of its own (``tree_removal.wait_pending`` waits for it; a process that dies
  first leaves it to the reaper, which removes it without a finding);
- nothing here imports Airflow and nothing touches the source cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from drillbook.catalogue.common import format_duration
from drillbook.drills.backup_restore import measure
from drillbook.drills.backup_restore.catalogue import BackupRestoreDrill
from drillbook.drills.backup_restore.lifetime import Interrupted
from drillbook.drills.backup_restore.physical.cluster import PhysicalCluster, Recovery
from drillbook.drills.backup_restore.physical.recover_phases import pitr_proof_phase, recover_phase
from drillbook.drills.backup_restore.physical.restore_phases import (
    archive_phase,
    locate_phase,
    restore_phase,
    safety_phase,
)
from drillbook.drills.backup_restore.physical.source import (
    BackupSet,
    PhysicalSource,
    Target,
    TargetTime,
    parse_target,
)
from drillbook.drills.backup_restore.physical.verify_phases import verify_phase
from drillbook.drills.base import ResultBuilder
from drillbook.errors import DrillAborted
from drillbook.result import DrillResult, Phase
from drillbook.safety.redact import redact_obj

KIND = "backup_restore"


def make_source(drill: BackupRestoreDrill, env: Mapping[str, str]) -> PhysicalSource:
    """The ``PhysicalSource`` for the drill's ``backup:`` (one module per tool)."""
    spec = drill.backup
    if spec.pgbackrest is not None:
        from drillbook.drills.backup_restore.physical.pgbackrest import PgBackRest

        p = spec.pgbackrest
        return PgBackRest(stanza=p.stanza, config=p.config, repo=p.repo, os_user=p.os_user, env=env)
    if spec.barman is not None:
        from drillbook.drills.backup_restore.physical import barman  # type: ignore[attr-defined,unused-ignore]

        return barman.Barman(
            server=spec.barman.server, config=spec.barman.config, os_user=spec.barman.os_user, env=env
        )
    raise ValueError(f"backup {spec.where!r} is not a physical backup")


class _Physical:
    def __init__(
        self,
        b: ResultBuilder,
        *,
        drill: BackupRestoreDrill,
        source: PhysicalSource,
        state_dir: Path | None,
        base_dir: Path | None,
        env: Mapping[str, str],
        start: datetime,
    ):
        self.b, self.drill, self.source, self.state_dir, self.base_dir, self.env, self.start = (
            b,
            drill,
            source,
            state_dir,
            base_dir,
            env,
            start,
        )
        self.target: Target = parse_target(drill.backup.target)
        self.backup: BackupSet | None = None
        self.cluster: PhysicalCluster | None = None
        self.recovery: Recovery | None = None
        self.recovery_written: dict[str, str] | None = None  # the recovery target settings the restore wrote
        self.restore_command: str | None = (
            None  # the restore_command the restore wrote and its source accepted
        )
        self.archive_last: str | None = (
            None  # newest contiguous segment the archive check found (listed or remembered)
        )

    def abort(self, where: str) -> NoReturn:
        raise DrillAborted(where)

    def fail(self, ph: Any, code: str, message: str, where: str, detail: str | None = None) -> NoReturn:
        self.b.find(code, message, subject=self.source.describe())
        ph.status, ph.detail = "failed", detail or message[:200]
        self.abort(where)

    def measure(self, rto: float, previous: dict[str, Any] | None) -> None:
        with self.b.phase("measure") as ph:
            rpo, source = measure_rpo(self.target, self.recovery, self.backup, self.start)
            m = self.b.measurements
            m.rto_seconds = round(rto, 3)
            m.rpo_seconds = round(rpo, 3) if rpo is not None else None
            m.values["rpo_source"] = source
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
            ph.detail = f"RTO {format_duration(rto)}, RPO {format_duration(rpo)} ({source})"

    def teardown(self) -> None:
        if self.cluster is None:
            return
        with self.b.phase("teardown") as ph:
            # stopped before the drill reports; the directory (a thousand files, 0.2-0.3 s of unlinks on 2 shared
            # cores) is renamed and removed on a thread of its own while the result is recorded; a process that
            # dies first leaves it to the reaper (ephemeral_reap.py), never running
            self.cluster.close(remove_now=False)
            ph.detail = "stopped the recovered cluster; its directory is removed in the background"


def measure_rpo(
    target: Target, rec: Recovery | None, backup: BackupSet | None, start: datetime
) -> tuple[float | None, str]:
    """(seconds, rule) of data a recovery to ``target`` loses; see the module docstring."""
    point = rec.last_replay if rec is not None and rec.last_replay is not None else None
    rule = "last replayed commit"
    if point is None and backup is not None:
        point, rule = backup.stop_time, "backup end (no commit replayed after it)"
    if point is None:
        return None, "unknown"
    if isinstance(target, TargetTime):
        return max(0.0, (target.time - point).total_seconds()), f"{rule} vs target time"
    return max(0.0, (start - point).total_seconds()), f"{rule} vs drill start"


def run_physical(
    *,
    drill: BackupRestoreDrill,
    source: PhysicalSource | None = None,
    state_dir: Path | None = None,
    base_dir: Path | None = None,
    previous: dict[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    on_phase: Callable[[Phase], None] | None = None,
    reaped_clusters: Sequence[str] = (),
    now: datetime | None = None,
) -> DrillResult:
    """Run ``drill`` (a ``backup.pgbackrest``/``backup.barman`` drill) once; see the module docstring.

    ``env`` holds the tool's own variables (``PGBACKREST_*``) from the composition root.
    """
    env = dict(env or {})
    b = ResultBuilder(
        kind=KIND,
        drill=drill.name,
        target=drill.backup.where,
        controls=list(drill.controls),
        objectives={"rto_seconds": drill.objectives.rto, "rpo_seconds": drill.objectives.rpo},
        on_phase=on_phase,
    )
    start = now or b.started_at
    run = _Physical(
        b,
        drill=drill,
        source=source or make_source(drill, env),
        state_dir=state_dir,
        base_dir=base_dir,
        env=env,
        start=start,
    )
    b.details["recovery_target"] = run.target.describe()
    for (
        root
    ) in reaped_clusters:  # the Airflow reap task's; the cluster's own prepare() reports those it reaps
        b.find(
            "SCRATCH_REAPED",
            f"an ephemeral cluster left by a killed drill was stopped and removed: {root}",
            subject=root,
        )
    try:
        locate_phase(run)
        archive_phase(run)
        restore_phase(run)
        safety_phase(run)
        recover_phase(run)
        if drill.backup.pitr_proof is not None:
            pitr_proof_phase(run, drill.backup.pitr_proof)
        verify_phase(run, previous)
        rto = b.elapsed()
        if not b.has_blocking():
            run.measure(rto, previous)
    except DrillAborted:
        pass
    except Interrupted as exc:
        where = b.phases[-1].name if b.phases else "start"
        if b.phases:
            b.phases[-1].status, b.phases[-1].detail = "failed", f"interrupted by {exc.name}"
        b.find(
            "DRILL_INTERRUPTED",
            f"the drill was stopped by {exc.name} during or after phase {where!r}; "
            "nothing after it was checked",
            subject=where,
        )
    finally:
        run.teardown()
    from drillbook.drills.backup_restore.verify.suppress import apply_suppressions

    apply_suppressions(b, list(drill.verify.ignore))
    b.details = redact_obj(b.details)
    return b.finish()
