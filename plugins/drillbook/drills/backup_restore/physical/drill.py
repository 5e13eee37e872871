"""Run one physical-backup drill: locate, check the archive, restore, recover to the target, prove, verify, measure.

Rules this module enforces:
- phases run in order, each timed: ``locate`` (newest backup set; its age
  against the RPO objective is ``BACKUP_STALE``; a time target older than the
  backup's end is ``PITR_TARGET_BEFORE_BACKUP``), ``archive`` (WAL contiguity,
  ``WAL_GAP`` with the first missing segment), ``restore`` (the tool into a
  private cluster's data directory; a repository checksum failure is
  ``BACKUP_CORRUPT``), ``safety`` (the effective settings before start,
  ``SCRATCH_UNSAFE`` refuses start), ``recover`` (start, the same assertion
  from pg_settings first, wait for the target, read the last replayed commit,
  promote), ``pitr_proof``, the verify ladder per database, ``measure``,
  ``teardown``; a finding that makes later phases meaningless stops the drill;
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

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from drillbook.catalogue.common import format_duration
from drillbook.drills.backup_restore import measure
from drillbook.drills.backup_restore.catalogue import BackupRestoreDrill, PitrProof
from drillbook.drills.backup_restore.lifetime import Interrupted
from drillbook.drills.backup_restore.physical import archive_check
from drillbook.drills.backup_restore.physical.cluster import PhysicalCluster, Recovery
from drillbook.drills.backup_restore.physical.cluster_safety import RECOVERY_TARGETS, ClusterUnsafe
from drillbook.drills.backup_restore.physical.restored import RecoveryProblem
from drillbook.drills.backup_restore.physical.source import (
    BackupSet,
    Latest,
    PhysicalSource,
    PhysicalSourceError,
    Target,
    TargetTime,
    parse_target,
)
from drillbook.drills.base import ResultBuilder
from drillbook.errors import DrillAborted
from drillbook.result import DrillResult, Phase
from drillbook.safety.redact import redact_obj

KIND = "backup_restore"
PROOF_TIMEOUT_MS = 60_000
#: the role drillbook connects to the recovered cluster as (trust on its private socket); it must exist in the backup
SUPERUSER = "postgres"
log = logging.getLogger(__name__)


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


#: a backup set ending this far after the drill's start is a clock or a tampered catalogue, not a fresh backup
CLOCK_SKEW_S = 300


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

    def locate(self) -> None:
        with self.b.phase("locate") as ph:
            try:
                self.backup = bk = self.source.locate()
            except PhysicalSourceError as exc:
                self.b.checked()
                self.fail(ph, exc.code, f"{self.source.describe()}: {exc.message}", "locate")
            self.b.checked()
            age = (self.start - bk.stop_time).total_seconds()
            self.b.measurements.values["backup_age_seconds"] = round(age, 1)
            self.b.details["backup_set"] = {
                "label": bk.label,
                "start": bk.start_time.isoformat(),
                "stop": bk.stop_time.isoformat(),
                "start_wal": bk.start_wal,
                "stop_wal": bk.stop_wal,
                "pg_major": bk.pg_major,
                "size_bytes": bk.size_bytes,
                "timeline": bk.timeline,
                "tool": self.source.tool,
            }
            if (
                age < -CLOCK_SKEW_S or bk.stop_time < bk.start_time
            ):  # untrusted info: an age that cannot be true
                self.b.find(
                    "BACKUP_STALE",
                    f"the newest backup set {bk.label!r} claims to end at "
                    f"{bk.stop_time.isoformat()} ({'in the future, ' + format_duration(-age) + ' from now' if age < 0 else 'before it started'}"
                    f"): its age cannot be measured, so its freshness against the RPO objective is not proven",
                    subject=self.source.describe(),
                )
            elif age > self.drill.objectives.rpo:
                self.b.find(
                    "BACKUP_STALE",
                    f"the newest backup set {bk.label!r} ended {format_duration(age)} ago, RPO "
                    f"objective {format_duration(self.drill.objectives.rpo)}",
                    subject=self.source.describe(),
                )
            if isinstance(self.target, TargetTime):
                self.b.checked()
                if self.target.time < bk.stop_time:
                    self.fail(
                        ph,
                        "PITR_TARGET_BEFORE_BACKUP",
                        f"recovery target {self.target.time.isoformat()} is before the end of the newest backup set "
                        f"{bk.label!r} ({bk.stop_time.isoformat()}): it cannot recover to that time",
                        "locate",
                    )
            ph.detail = (
                f"{self.source.tool} {bk.label} ({format_duration(age)} old), target {self.target.describe()}"
            )

    def archive(self) -> None:
        bk = self.backup
        assert bk is not None
        with self.b.phase("archive") as ph:
            key = f"{self.source.tool}-{self.source.describe()}"
            try:
                report = archive_check.check_archive(self.source, bk, state_dir=self.state_dir, key=key)
            except PhysicalSourceError as exc:
                self.fail(
                    ph,
                    "WAL_GAP" if exc.code == "WAL_GAP" else "BACKUP_MISSING",
                    f"the WAL archive could not be listed: {exc.message}",
                    "archive",
                )
            self.b.checked()
            self.b.measurements.counts["wal_segments_checked"] = report.checked
            self.b.details["wal_archive"] = {
                "first": report.first,
                "last": report.last,
                "gap": report.gap,
                "resumed_after": report.resumed_after,
            }
            if report.gap:
                self.fail(
                    ph,
                    "WAL_GAP",
                    f"WAL segment {report.gap} is missing from the archive of "
                    f"{self.source.describe()} (backup {bk.label!r} starts at {bk.start_wal}; last contiguous "
                    f"segment {report.last}): recovery cannot replay past it",
                    "archive",
                    report.describe(),
                )
            self.archive_last = report.last
            ph.detail = report.describe()

    def restore(self) -> None:
        bk = self.backup
        assert bk is not None
        with self.b.phase("restore") as ph:
            from drillbook.drills.backup_restore.physical.pgbackrest import run_as_user

            try:
                user = run_as_user(getattr(self.source, "os_user", None))
                self.cluster = PhysicalCluster(user=user, superuser=SUPERUSER)
                datadir = self.cluster.prepare()
                for root in self.cluster.reaped:
                    self.b.find(
                        "SCRATCH_REAPED",
                        f"an ephemeral cluster left by a killed drill was removed: {root}",
                        subject=root,
                    )
                info = self.source.restore(
                    bk, self.target, datadir, env=self.env, timeout_s=self.drill.restore.timeout
                )
            except PhysicalSourceError as exc:
                self.b.checked()
                self.fail(
                    ph,
                    exc.code,
                    f"restore of {bk.label!r} from {self.source.describe()} failed: {exc.message}",
                    "restore",
                )
            self.b.checked()
            self.b.details["recovery_settings"] = info.recovery_conf_written
            self.recovery_written = {
                k: v for k, v in info.recovery_conf_written.items() if k in RECOVERY_TARGETS
            }
            self.restore_command = info.recovery_conf_written.get("restore_command")
            ph.detail = f"{bk.label} into a private cluster in {info.seconds:.1f}s"

    def safety(self) -> None:
        assert self.cluster is not None
        with self.b.phase("safety") as ph:
            try:
                major = self.cluster.read_version()
                values = self.cluster.assert_safe_before_start(
                    self.recovery_written, restore_command=self.restore_command
                )
            except RecoveryProblem as exc:
                self.fail(ph, exc.code, exc.message, "safety")
            except ClusterUnsafe as exc:
                self.b.checked()
                self.fail(ph, "SCRATCH_UNSAFE", str(exc), "safety", "refused before start")
            self.b.checked()
            self.b.environment["restored_pg_major"] = str(major)
            self.b.details["scratch_settings_before_start"] = values
            self.b.details["scratch_settings_read_by"] = (
                "in-process scan, forced on the command line, pg_file_settings after start"
                if self.cluster.scanned is not None
                else "postgres -C"
            )
            if self.backup is not None and self.cluster.wal_segment_size:
                self.backup = replace(self.backup, wal_segment_size=self.cluster.wal_segment_size)
            ph.detail = (
                f"PostgreSQL {major} binaries {self.cluster.bindir}; archive_mode off, no primary, no hooks"
            )

    def recover(self) -> None:
        assert self.cluster is not None
        with self.b.phase("recover") as ph:
            try:
                self.cluster.start()
                self.b.details["scratch_network"] = self.cluster.network
                self.b.details["scratch_running"] = self.cluster.assert_safe_running()
                self.b.checked()
                self.recovery = rec = self.cluster.wait_recovery(
                    has_target=not isinstance(self.target, Latest), timeout_s=self.drill.restore.timeout
                )
                self._replayed_what_was_checked(ph, rec)
                self.cluster.promote()
            except ClusterUnsafe as exc:
                self.fail(ph, "SCRATCH_UNSAFE", str(exc), "recover", "refused after start; stopped")
            except RecoveryProblem as exc:
                self.b.checked()
                self.fail(ph, exc.code, f"{self.target.describe()}: {exc.message}", "recover")
            self.b.checked()
            self.b.measurements.values.update(
                {
                    "last_replayed_commit": rec.last_replay.isoformat() if rec.last_replay else None,
                    "replay_lsn": rec.replay_lsn,
                    "recovery_seconds": round(rec.seconds, 3),
                }
            )
            ph.detail = (
                f"reached {rec.reached} at {rec.replay_lsn}, last replayed commit "
                f"{rec.last_replay.isoformat() if rec.last_replay else 'none after the backup'}; promoted"
            )

    def _replayed_what_was_checked(self, ph: Any, rec: Recovery) -> None:
        """Recovery to the archive's end must replay through the newest segment the archive check vouched for.

        The check remembers what earlier runs verified and does not list it again; a segment deleted since is
        only seen here, when recovery ends on the hole and would promote without every later transaction.
        """
        bk = self.backup
        if rec.reached != "end of archive" or self.archive_last is None or bk is None or not rec.replay_lsn:
            return
        hi, _, lo = rec.replay_lsn.partition("/")
        try:
            pos = (int(hi, 16) << 32) | int(lo, 16)
        except ValueError:
            return
        size = bk.wal_segment_size
        segno = (
            pos // size if pos % size == 0 else pos // size + 1
        )  # the segment recovery could not read next
        per_log = archive_check.segments_per_log(size)
        _, last_log, last_seg = archive_check.split(self.archive_last)
        if segno <= last_log * per_log + last_seg:
            missing = f"{bk.timeline:08X}{segno // per_log:08X}{segno % per_log:08X}"
            self.b.details["wal_archive"]["replay_ended_before"] = missing
            self.fail(
                ph,
                "WAL_GAP",
                f"recovery ended at {rec.replay_lsn}, before the end of the WAL the archive check "
                f"vouched for (through {self.archive_last}): segment {missing} is missing or unreadable in the "
                f"archive of {self.source.describe()} (removed since it was verified?); every transaction after "
                "it would be lost",
                "recover",
            )

    def pitr_proof(self, proof: PitrProof) -> None:
        assert self.cluster is not None
        import psycopg

        with self.b.phase("pitr_proof") as ph:
            results = {}
            for key, sql, want_rows in (
                ("must_exist", proof.must_exist, True),
                ("must_not_exist", proof.must_not_exist, False),
            ):
                if not sql:
                    continue
                try:
                    with psycopg.connect(
                        self.cluster.dsn(proof.database), autocommit=False, connect_timeout=30
                    ) as conn:
                        conn.execute("set transaction read only")
                        conn.execute(f"set local statement_timeout = {PROOF_TIMEOUT_MS}")
                        cur = conn.execute(sql)  # type: ignore[arg-type]  # the catalogue's query, read-only txn
                        n = len(cur.fetchmany(1000)) if cur.description else 0
                        conn.rollback()
                except psycopg.Error as exc:
                    self.fail(
                        ph,
                        "SEMANTICS_ERROR",
                        f"pitr_proof.{key} could not run in {proof.database!r}: "
                        f"{type(exc).__name__}: {str(exc).strip()[:300]}",
                        "pitr_proof",
                    )
                self.b.checked()
                results[key] = n
                if bool(n) != want_rows:
                    self.b.find(
                        "PITR_PROOF_FAILED",
                        f"pitr_proof.{key} returned {n} row(s) at {self.target.describe()}; expected "
                        f"{'at least one' if want_rows else 'none'}: {sql.strip()[:200]}",
                        subject=f"pitr_proof.{key}",
                    )
                    ph.status = "failed"
            self.b.details["pitr_proof"] = results
            ph.detail = ", ".join(f"{k}: {v} row(s)" for k, v in results.items())

    def verify(self, previous: dict[str, Any] | None) -> None:
        assert self.cluster is not None
        from drillbook.drills.backup_restore.verify import run_ladder

        with self.b.phase("verify.databases") as ph:
            found = self.cluster.databases()
            wanted = self.drill.restore.database
            if wanted:
                dbs = [d for d, _ in found if d == wanted]
                if not dbs:
                    self.fail(
                        ph,
                        "EMPTY_RESTORE",
                        f"restore.database {wanted!r} is not in the restored cluster "
                        f"(found: {', '.join(d for d, _ in found)})",
                        "verify",
                    )
            else:
                dbs = [d for d, n in found if n > 0]
                if not dbs:
                    self.fail(
                        ph,
                        "EMPTY_RESTORE",
                        "no database of the restored cluster has a user table "
                        f"(databases: {', '.join(d for d, _ in found)})",
                        "verify",
                    )
            self.b.checked()
            ph.detail = ", ".join(f"{d} ({n} table(s))" for d, n in found if d in dbs)
        self.b.details["verified_databases"] = dbs
        base = self.base_dir or Path.cwd()
        from functools import partial

        from drillbook.drills.backup_restore.verify.ladder import table_in_scope
        from drillbook.drills.backup_restore.verify.prefetch import Prefetch
        from drillbook.drills.backup_restore.verify.tiers import skipped_by_tier
        from drillbook.settings import DrillTimeouts

        verify = self.drill.verify
        timeouts = DrillTimeouts()
        count = skipped_by_tier(verify, "verify.volume") is None
        btree = verify.amcheck is not False and skipped_by_tier(verify, "verify.integrity") is None
        cluster = self.cluster

        # the heap check, the exact row count and the B-tree checks are independent full reads: the count and
        # the B-tree checks start on connections of their own while the heap check runs here, and the rungs
        # wait for their results (prefetch.py); closed (cancelled, joined) before teardown, whatever happened
        with Prefetch(statement_timeout_s=timeouts.verify_statement) as prefetch:

            def start_reads(db: str, amcheck_schema: str | None) -> None:
                prefetch.start(
                    db,
                    cluster.dsn(db),
                    volume=count,
                    amcheck_schema=amcheck_schema if btree else None,
                    in_scope=partial(table_in_scope, verify),
                )

            if verify.amcheck is not False:
                with self.b.phase("verify.heap") as ph:
                    ph.detail = self._heap_check(dbs, ph, start_reads)
                    if any(f.code == "HEAP_CORRUPT" for f in self.b.findings):
                        ph.detail += "; the ladder is not run on damaged tables (reading them fails)"
                        self.abort("verify.heap")
            for db in dbs:
                start_reads(db, None)  # the count of a database the heap check did not reach
                run_ladder(
                    self.b,
                    scratch_dsn=cluster.dsn(db),
                    verify=verify,
                    base_dir=base,
                    previous=previous,
                    source_server_version=cluster.version,
                    timeouts=timeouts,
                    prefetched=prefetch.for_db(db),
                )

    def _heap_check(self, dbs: list[str], ph: Any, start_reads: Callable[[str, str | None], None]) -> str:
        """verify_heapam on every table of ``dbs``: the B-tree rung does not read the heap, a physical copy can damage it.

        ``start_reads(db, amcheck_schema)`` starts the ladder's other long reads of ``db`` once amcheck is in place.
        """
        assert self.cluster is not None
        import psycopg
        import psycopg.sql

        from drillbook.drills.backup_restore.verify.integrity import _amcheck_schema

        tables = bad = 0
        for db in dbs:
            try:
                with psycopg.connect(self.cluster.dsn(db), autocommit=True, connect_timeout=30) as conn:
                    # amcheck where the backup installed it, else in drillbook's own schema (the recovered cluster is
                    # ours to change); called schema-qualified so a verify_heapam the backup brings is never used
                    schema, how = _amcheck_schema(conn)
                    if schema is None:
                        raise psycopg.errors.UndefinedFunction(how)
                    start_reads(db, schema)
                    fn = f"{psycopg.sql.Identifier(schema).as_string(conn)}.verify_heapam"
                    rels = [
                        r[0]
                        for r in conn.execute(
                            "select c.oid::regclass::text from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                            "where c.relkind in ('r','m') and c.relpersistence = 'p' and n.nspname not in "
                            "('pg_catalog','information_schema') and n.nspname not like 'pg_toast%' order by 1"
                        ).fetchall()
                    ]
                    for rel in rels:
                        tables += 1
                        try:
                            rows = conn.execute(
                                f"select blkno, offnum, msg from {fn}(%s::regclass, "  # type: ignore[arg-type]
                                "on_error_stop => false, check_toast => true) limit 5",
                                (rel,),
                            ).fetchall()
                        except (
                            psycopg.Error
                        ) as exc:  # a page that cannot be read (checksum failure) is corrupt too
                            rows = [(None, None, str(exc).strip().splitlines()[0][:300])]
                        self.b.checked()
                        if rows:
                            bad += 1
                            self.b.find(
                                "HEAP_CORRUPT",
                                f"{db}.{rel}: {rows[0][2]} (block {rows[0][0]})",
                                subject=f"{db}.{rel}",
                                detail={
                                    "problems": "; ".join(
                                        f"block {r[0]} offset {r[1]}: {r[2]}" for r in rows
                                    )[:1000]
                                },
                            )
                            ph.status = "failed"
            except psycopg.Error as exc:
                if self.drill.verify.amcheck is True:
                    self.b.find(
                        "AMCHECK_UNAVAILABLE",
                        f"heap check in {db!r}: {type(exc).__name__}: {str(exc).strip()[:300]}",
                        subject=db,
                    )
                    ph.status = "failed"
                return f"heap check not run in {db!r}: {str(exc).strip()[:200]}"
        self.b.measurements.counts["heap_tables_checked"] = tables
        return f"{tables} table(s) heap-checked, {bad} corrupt"

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
        run.locate()
        run.archive()
        run.restore()
        run.safety()
        run.recover()
        if drill.backup.pitr_proof is not None:
            run.pitr_proof(drill.backup.pitr_proof)
        run.verify(previous)
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
