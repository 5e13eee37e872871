"""The physical drill's phases before the cluster starts: locate, archive, restore, safety.

Rules this module enforces (called by drill.py):
- ``locate``: the newest backup set; its age against the RPO objective is
  ``BACKUP_STALE``; a time target older than the backup's end is
  ``PITR_TARGET_BEFORE_BACKUP``;
- ``archive``: WAL contiguity, ``WAL_GAP`` with the first missing segment;
- ``restore``: the tool into a private cluster's data directory; a repository
  checksum failure is ``BACKUP_CORRUPT``;
- ``safety``: the effective settings before start, ``SCRATCH_UNSAFE`` refuses start.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from drillbook.catalogue.common import format_duration
from drillbook.drills.backup_restore.physical import archive_check
from drillbook.drills.backup_restore.physical.cluster import PhysicalCluster
from drillbook.drills.backup_restore.physical.cluster_safety import RECOVERY_TARGETS, ClusterUnsafe
from drillbook.drills.backup_restore.physical.restored import RecoveryProblem
from drillbook.drills.backup_restore.physical.source import PhysicalSourceError, TargetTime

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.physical.drill import _Physical

#: the role drillbook connects to the recovered cluster as (trust on its private socket); it must exist in the backup
SUPERUSER = "postgres"
#: a backup set ending this far after the drill's start is a clock or a tampered catalogue, not a fresh backup
CLOCK_SKEW_S = 300


def locate_phase(run: _Physical) -> None:
    with run.b.phase("locate") as ph:
        try:
            run.backup = bk = run.source.locate()
        except PhysicalSourceError as exc:
            run.b.checked()
            run.fail(ph, exc.code, f"{run.source.describe()}: {exc.message}", "locate")
        run.b.checked()
        age = (run.start - bk.stop_time).total_seconds()
        run.b.measurements.values["backup_age_seconds"] = round(age, 1)
        run.b.details["backup_set"] = {
            "label": bk.label,
            "start": bk.start_time.isoformat(),
            "stop": bk.stop_time.isoformat(),
            "start_wal": bk.start_wal,
            "stop_wal": bk.stop_wal,
            "pg_major": bk.pg_major,
            "size_bytes": bk.size_bytes,
            "timeline": bk.timeline,
            "tool": run.source.tool,
        }
        if age < -CLOCK_SKEW_S or bk.stop_time < bk.start_time:  # untrusted info: an age that cannot be true
            run.b.find(
                "BACKUP_STALE",
                f"the newest backup set {bk.label!r} claims to end at "
                f"{bk.stop_time.isoformat()} ({'in the future, ' + format_duration(-age) + ' from now' if age < 0 else 'before it started'}"
                f"): its age cannot be measured, so its freshness against the RPO objective is not proven",
                subject=run.source.describe(),
            )
        elif age > run.drill.objectives.rpo:
            run.b.find(
                "BACKUP_STALE",
                f"the newest backup set {bk.label!r} ended {format_duration(age)} ago, RPO "
                f"objective {format_duration(run.drill.objectives.rpo)}",
                subject=run.source.describe(),
            )
        if isinstance(run.target, TargetTime):
            run.b.checked()
            if run.target.time < bk.stop_time:
                run.fail(
                    ph,
                    "PITR_TARGET_BEFORE_BACKUP",
                    f"recovery target {run.target.time.isoformat()} is before the end of the newest backup set "
                    f"{bk.label!r} ({bk.stop_time.isoformat()}): it cannot recover to that time",
                    "locate",
                )
        ph.detail = (
            f"{run.source.tool} {bk.label} ({format_duration(age)} old), target {run.target.describe()}"
        )


def archive_phase(run: _Physical) -> None:
    bk = run.backup
    assert bk is not None
    with run.b.phase("archive") as ph:
        key = f"{run.source.tool}-{run.source.describe()}"
        try:
            report = archive_check.check_archive(run.source, bk, state_dir=run.state_dir, key=key)
        except PhysicalSourceError as exc:
            run.fail(
                ph,
                "WAL_GAP" if exc.code == "WAL_GAP" else "BACKUP_MISSING",
                f"the WAL archive could not be listed: {exc.message}",
                "archive",
            )
        run.b.checked()
        run.b.measurements.counts["wal_segments_checked"] = report.checked
        run.b.details["wal_archive"] = {
            "first": report.first,
            "last": report.last,
            "gap": report.gap,
            "resumed_after": report.resumed_after,
        }
        if report.gap:
            run.fail(
                ph,
                "WAL_GAP",
                f"WAL segment {report.gap} is missing from the archive of "
                f"{run.source.describe()} (backup {bk.label!r} starts at {bk.start_wal}; last contiguous "
                f"segment {report.last}): recovery cannot replay past it",
                "archive",
                report.describe(),
            )
        run.archive_last = report.last
        ph.detail = report.describe()


def restore_phase(run: _Physical) -> None:
    bk = run.backup
    assert bk is not None
    with run.b.phase("restore") as ph:
        from drillbook.drills.backup_restore.physical.pgbackrest import run_as_user

        try:
            user = run_as_user(getattr(run.source, "os_user", None))
            run.cluster = PhysicalCluster(user=user, superuser=SUPERUSER)
            datadir = run.cluster.prepare()
            for root in run.cluster.reaped:
                run.b.find(
                    "SCRATCH_REAPED",
                    f"an ephemeral cluster left by a killed drill was removed: {root}",
                    subject=root,
                )
            info = run.source.restore(
                bk, run.target, datadir, env=run.env, timeout_s=run.drill.restore.timeout
            )
        except PhysicalSourceError as exc:
            run.b.checked()
            run.fail(
                ph,
                exc.code,
                f"restore of {bk.label!r} from {run.source.describe()} failed: {exc.message}",
                "restore",
            )
        run.b.checked()
        run.b.details["recovery_settings"] = info.recovery_conf_written
        run.recovery_written = {k: v for k, v in info.recovery_conf_written.items() if k in RECOVERY_TARGETS}
        run.restore_command = info.recovery_conf_written.get("restore_command")
        ph.detail = f"{bk.label} into a private cluster in {info.seconds:.1f}s"


def safety_phase(run: _Physical) -> None:
    assert run.cluster is not None
    with run.b.phase("safety") as ph:
        try:
            major = run.cluster.read_version()
            values = run.cluster.assert_safe_before_start(
                run.recovery_written, restore_command=run.restore_command
            )
        except RecoveryProblem as exc:
            run.fail(ph, exc.code, exc.message, "safety")
        except ClusterUnsafe as exc:
            run.b.checked()
            run.fail(ph, "SCRATCH_UNSAFE", str(exc), "safety", "refused before start")
        run.b.checked()
        run.b.environment["restored_pg_major"] = str(major)
        run.b.details["scratch_settings_before_start"] = values
        run.b.details["scratch_settings_read_by"] = (
            "in-process scan, forced on the command line, pg_file_settings after start"
            if run.cluster.scanned is not None
            else "postgres -C"
        )
        if run.backup is not None and run.cluster.wal_segment_size:
            run.backup = replace(run.backup, wal_segment_size=run.cluster.wal_segment_size)
        ph.detail = (
            f"PostgreSQL {major} binaries {run.cluster.bindir}; archive_mode off, no primary, no hooks"
        )
