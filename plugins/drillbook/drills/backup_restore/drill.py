"""Run one backup-restore drill end to end and return its DrillResult.

Rules this module enforces:
- the scratch guard runs first: a refusal (``SCRATCH_UNSAFE``) ends the drill
  before anything is located, dumped, created or dropped;
- phases run in order (scratch, locate, fetch, inspect, restore, verify.*,
  measure, teardown), each timed; a finding that makes later phases
  meaningless (no backup, digest mismatch, unreadable or truncated archive,
  no fitting tool, restore that did not complete) stops the drill there;
- drillbook's own warm-up (the verify ladder's imports, GX and the suites) is a phase of
  its own, ``warm-up``, right after the scratch guard, and its seconds are not part of the
  RTO (see warmup.py); RTO is taken after the verify ladder, before measuring and teardown;
- a scratch database this call created is dropped before it returns, whatever
  happened (a stop signal included: ``DRILL_INTERRUPTED``); a drop that fails
  after the checks is ``SCRATCH_NOT_DROPPED`` (low), never an ERROR, and the
  database is left to the reaper; one handed in (created by an Airflow setup task) is left for the
  teardown task;
- the source is only ever read (live dumps are read-only; see locate.py).
This module imports no Airflow: the DAG and the CLI both call
``run_backup_restore``.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from drillbook.catalogue.common import format_duration, resolve_relative
from drillbook.drills.backup_restore import audit, isolation, measure, prescan, restore, tools
from drillbook.drills.backup_restore import fetch as fetch_mod
from drillbook.drills.backup_restore import locate as locate_mod
from drillbook.drills.backup_restore.archive import ArchiveInfo, ArchiveProblem, inspect_archive
from drillbook.drills.backup_restore.catalogue import BackupRestoreDrill
from drillbook.drills.backup_restore.ephemeral import EphemeralCluster
from drillbook.drills.backup_restore.lifetime import Interrupted, die_with_parent
from drillbook.drills.backup_restore.scratch import ScratchGuard, SourceUnreachable
from drillbook.drills.backup_restore.warmup import warm_up
from drillbook.drills.base import ResultBuilder
from drillbook.errors import DrillAborted, ScratchUnsafe
from drillbook.resources import pg
from drillbook.result import DrillResult, Phase
from drillbook.safety.redact import redact, redact_obj
from drillbook.settings import DrillTimeouts

KIND = "backup_restore"
#: Upper bound of ``pg_restore -l`` (it reads only the archive's table of contents).
log = logging.getLogger(__name__)


def _mb(size: int | None) -> str:
    return "?" if size is None else f"{size / 1e6:.1f} MB"


class _Drill:
    """The state of one run; each method is one phase."""

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
    def scratch(self, given: str | None) -> None:
        with self.b.phase("scratch") as ph:
            if self.drill.restore.target == "ephemeral":  # started in restore, once the dump's major is known
                self.b.checked()
                ph.detail = "a private ephemeral cluster, started for the restore"
                return
            try:
                self.guard.check_server()
                self.before = audit.snapshot(self.scratch_dsn)
                # A superuser scratch role is recorded, not failed: the filter still applies, but the
                # server's own permission checks no longer back it up (docs/backup_restore.md, Isolation).
                self.b.details["scratch_role_superuser"] = audit.is_superuser(self.scratch_dsn)
                if given:
                    self.guard.adopt(given)  # registered by drillbook, and locked while this run uses it
                    if not self.guard.is_empty(given):  # a retried task: restore into a clean database
                        self.guard.reset(given)
                        self.b.details["scratch_reset"] = True
                    self.scratch_db = given
                else:
                    self.scratch_db = self.guard.create(
                        drill=self.drill.name, run_id=self.run_id, now=self.start
                    )
                    self.owns_scratch = True
            except SourceUnreachable as exc:
                self.b.find("SOURCE_UNREACHABLE", str(exc), subject=pg.describe(self.source_dsn or ""))
                ph.status, ph.detail = "failed", "the guard could not ask the source which server it is"
                self.abort("scratch")
            except ScratchUnsafe as exc:
                self.b.find("SCRATCH_UNSAFE", str(exc), subject=pg.describe(self.scratch_dsn))
                ph.status, ph.detail = "failed", "refused by the scratch guard"
                self.abort("scratch")
            except Exception as exc:  # psycopg.OperationalError and friends: the server is not there
                if type(exc).__module__.startswith("psycopg"):
                    self.b.find(
                        "SCRATCH_UNREACHABLE", f"scratch server {pg.describe(self.scratch_dsn)}: {exc}"
                    )
                    ph.status, ph.detail = "failed", "scratch server unreachable"
                    self.abort("scratch")
                raise
            self.b.checked()
            ph.detail = f"{self.scratch_db} on {pg.describe(self.scratch_dsn).rsplit('/', 1)[0]}"
            if self.b.details.get("scratch_role_superuser"):
                ph.detail += " (scratch role is a superuser: only the dump filter stands between a dump and the server)"
            self.b.details["scratch_database"] = self.scratch_db

    def locate(self, bin_dir: str | None) -> None:
        spec = self.drill.backup
        location = (
            spec.location or ""
        )  # a physical backup never reaches this drill (drills.backup_restore.physical)
        with self.b.phase("locate") as ph:
            if spec.is_live:
                keep_in = spec.keep_live_dumps_in or ""
                keep = self.work_dir / "live" if not keep_in or keep_in.startswith("s3://") else Path(keep_in)
                try:
                    self.artefact, version = locate_mod.take_live_dump(
                        source_dsn=self.source_dsn or "",
                        drill=self.drill.name,
                        keep_in=keep,
                        bin_dir=bin_dir,
                        timeout=self.drill.restore.timeout,
                        now=self.start,
                    )
                except locate_mod.LiveDumpFailed as exc:
                    self.b.find(
                        exc.code,
                        f"source {pg.describe(self.source_dsn or '')}: {exc}",
                        subject=pg.describe(self.source_dsn or ""),
                    )
                    ph.status, ph.detail = "failed", f"live dump failed ({exc.code})"
                    self.abort("locate")
                except Exception as exc:
                    if type(exc).__module__.startswith("psycopg"):
                        self.b.find(
                            "SOURCE_UNREACHABLE", f"source {pg.describe(self.source_dsn or '')}: {exc}"
                        )
                        ph.status = "failed"
                        self.abort("locate")
                    raise
                self.b.environment["live_pg_dump"] = version
                if keep_in.startswith("s3://"):
                    uri = locate_mod.keep_on_s3(self.artefact, url=keep_in, s3_client=self._s3())
                    self.b.details["live_dump_kept_at"] = uri
            elif spec.is_s3:
                try:
                    self.artefact = locate_mod.locate_s3(
                        url=location, pattern=spec.pattern, s3_client=self._s3()
                    )
                except (
                    fetch_mod.transfer_errors()
                ) as exc:  # the store did not answer: not a missing backup, not a crash
                    self.b.find(
                        "FETCH_FAILED",
                        f"listing {spec.location} failed: {type(exc).__name__}: {exc}",
                        subject=spec.location,
                    )
                    ph.status, ph.detail = "failed", "the backup store did not answer"
                    self.abort("locate")
            else:
                self.artefact = locate_mod.locate_local(
                    location=location, pattern=spec.pattern, base_dir=self.base_dir
                )
            self.b.checked()
            if self.artefact is None:
                where = location
                if not spec.is_s3 and not spec.is_live:  # say exactly which path was looked at
                    tried = str(resolve_relative(location, self.base_dir))
                    where = tried if tried == location else f"{location} (tried {tried})"
                where += f" matching {spec.pattern!r}" if spec.pattern else ""
                self.b.find("BACKUP_MISSING", f"no backup found at {where}", subject=spec.location)
                ph.status, ph.detail = "failed", "no backup found"
                self.abort("locate")
            art = self.artefact
            age = locate_mod.newest_age_seconds(art, self.start)
            self.b.checked()
            if age > self.drill.objectives.rpo:
                self.b.find(
                    "BACKUP_STALE",
                    f"the newest backup {art.name!r} is {format_duration(age)} old, RPO objective "
                    f"{format_duration(self.drill.objectives.rpo)}",
                    subject=art.uri,
                    detail={"age_seconds": round(age, 1), "modified": art.modified.isoformat()},
                )
            self.b.measurements.values["backup_age_seconds"] = round(age, 1)
            self.b.details["artefact"] = {
                "uri": art.uri,
                "name": art.name,
                "size": art.size,
                "modified": art.modified.isoformat(),
                "live": art.live,
            }
            ph.detail = f"{art.name} ({_mb(art.size)}, {format_duration(age)} old)"

    def fetch(self) -> None:
        art = self.artefact
        assert art is not None
        with self.b.phase("fetch") as ph:
            if art.is_s3:
                try:
                    outcome = fetch_mod.fetch_s3(art, s3_client=self._s3(), work_dir=self.work_dir / "fetch")
                except fetch_mod.FetchBroken as exc:  # the partial download is already gone
                    self.b.checked()
                    self.b.find("FETCH_FAILED", str(exc), subject=art.uri)
                    ph.status, ph.detail = "failed", "download broke"
                    self.abort("fetch")
                self.downloaded = outcome.path
            else:
                outcome = fetch_mod.check_local(art)
            self.b.measurements.counts["artefact_bytes"] = outcome.size
            if not outcome.size_ok:
                self.b.checked()
                self.b.find(
                    "FETCH_FAILED",
                    f"{art.name!r}: got {outcome.size} bytes, the store lists {outcome.expected_size}",
                    subject=art.uri,
                    detail={"expected_size": outcome.expected_size, "size": outcome.size},
                )
                ph.status, ph.detail = "failed", "size mismatch"
                self.abort("fetch")
            if outcome.digest_ok is None:
                self.b.find(
                    "ARTEFACT_UNVERIFIED",
                    f"{art.name!r} has no .sha256 sidecar and no sha256 metadata",
                    subject=art.uri,
                )
                ph.detail = f"{_mb(outcome.size)}, no digest to check against"
                return
            self.b.checked()
            if not outcome.digest_ok:
                self.b.find(
                    "FETCH_FAILED",
                    f"{art.name!r}: sha256 differs from its {outcome.digest_source}",
                    subject=art.uri,
                    detail={
                        "expected_sha256": outcome.expected_sha256,
                        "sha256": outcome.sha256,
                        "digest_source": outcome.digest_source,
                    },
                )
                ph.status, ph.detail = "failed", f"sha256 mismatch ({outcome.digest_source})"
                self.abort("fetch")
            ph.detail = f"{_mb(outcome.size)}, sha256 matches its {outcome.digest_source}"

    def inspect(self, bin_dir: str | None) -> None:
        art = self.artefact
        assert art is not None and art.path is not None
        path = self.downloaded or art.path
        with self.b.phase("inspect") as ph:
            try:
                self.info = info = inspect_archive(path)
            except ArchiveProblem as exc:
                self.b.checked()
                self.b.find(exc.code, f"{art.name!r}: {exc.message}", subject=art.uri)
                ph.status, ph.detail = "failed", exc.message
                self.abort("inspect")
            self.b.checked()
            name = "psql" if info.format.startswith("plain") else "pg_restore"
            self.tool, seen = tools.choose(name, min_major=info.dump_major, bin_dir=bin_dir)
            self.b.checked()
            if self.tool is None:
                self.b.find(
                    "VERSION_MISMATCH",
                    f"{art.name!r} was written by pg_dump {info.pg_dump_version}; no {name} of major version "
                    f">= {info.dump_major} was found (found: {tools.describe(seen)})",
                    subject=art.uri,
                    detail={"pg_dump_version": info.pg_dump_version, "bin_dir": bin_dir or ""},
                )
                ph.status, ph.detail = "failed", f"no {name} >= {info.dump_major}"
                self.abort("inspect")
            if info.format in ("custom", "directory", "tar"):
                self._list_toc(path, art)
            isolation.prescan_phase(self, path, art, info, ph)
            self.b.environment.update(
                {
                    "restore_tool": f"{name} {self.tool.version}",
                    "archive_pg_dump": info.pg_dump_version or "unknown",
                    "archive_server": info.server_version or "unknown",
                }
            )
            self.b.measurements.values.update(
                {
                    "archive_format": info.format,
                    "pg_dump_version": info.pg_dump_version,
                    "archive_created_at": info.created_at.isoformat() if info.created_at else None,
                }
            )
            self.b.details["archive"] = {
                "format": info.format,
                "pg_dump_version": info.pg_dump_version,
                "server_version": info.server_version,
                "archive_version": info.archive_version,
                "created_at": info.created_at.isoformat() if info.created_at else None,
                "compression": info.compression,
            }
            ph.detail = f"{info.summary()}; {name} {self.tool.version}"

    def _list_toc(self, path: Path, art: locate_mod.Artefact) -> None:
        """``pg_restore -l`` must read the whole table of contents; count the table-data entries.

        The listing is one line per TOC entry (a few MB for the largest schemas), so it is
        captured whole with a timeout: reading stdout then stderr from a Popen could hang
        forever on a stuck tool or deadlock on a full stderr pipe.
        """
        assert self.tool is not None
        try:
            proc = subprocess.run(
                [self.tool.path, "-l", str(path)],
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=self.timeouts.toc,
                check=False,
                preexec_fn=die_with_parent(),
            )
        except subprocess.TimeoutExpired:
            self.b.find(
                "ARCHIVE_UNREADABLE",
                f"{art.name!r}: pg_restore -l did not list the table of contents within {self.timeouts.toc}s",
                subject=art.uri,
            )
            self.abort("inspect")
        entries = data = 0
        for raw in proc.stdout.splitlines():
            if raw and not raw.startswith(b";"):
                entries += 1
                data += b" TABLE DATA " in raw
        err = proc.stderr[-4000:].decode("utf-8", "replace")
        if proc.returncode != 0:
            classifier = restore.StderrClassifier()
            for line in err.splitlines():
                classifier.feed(line)
            if "unsupported version" in err:  # the header parsed, but this pg_restore is too old for it
                code = "VERSION_MISMATCH"
            elif any(g.code == "ARCHIVE_TRUNCATED" for g in classifier.groups.values()):
                code = "ARCHIVE_TRUNCATED"
            else:
                code = "ARCHIVE_UNREADABLE"
            self.b.find(
                code,
                f"{art.name!r}: pg_restore cannot read the table of contents: {err.strip()[-300:]}",
                subject=art.uri,
            )
            self.abort("inspect")
        self.b.measurements.counts.update({"toc_entries": entries, "toc_table_data": data})

    def restore(self) -> None:
        assert self.info is not None and self.tool is not None and self.artefact is not None
        path = self.downloaded or self.artefact.path
        assert path is not None
        with self.b.phase("restore") as ph:
            spec = self.drill.restore
            into = isolation.start_ephemeral(self) if spec.target == "ephemeral" else self.scratch_db
            assert into is not None
            outcome = restore.run_restore(
                fmt=self.info.format,
                tool=self.tool,
                path=path,
                scratch_db_dsn=pg.with_dbname(self.scratch_dsn, into),
                jobs=spec.jobs,
                no_owner=spec.no_owner,
                timeout=spec.timeout,
                scope=spec.target,
                expected=(f'role "{self.cluster.superuser}" already exists',) if self.cluster else (),
            )
            restore.add_findings(self.b, outcome)
            self.b.checked()
            counts = outcome.classifier.counts
            self.b.measurements.counts["restore_error_lines"] = outcome.classifier.error_lines
            self.b.details["restore"] = {
                "argv": " ".join(outcome.argv),
                "exit_code": outcome.exit_code,
                "line_classes": dict(counts),
            }
            classes = ", ".join(sorted({g.code for g in outcome.classifier.groups.values()}))
            ph.detail = (
                f"{outcome.argv[0]} exit {outcome.exit_code}, {outcome.classifier.error_lines} error line(s)"
                + (f" ({classes})" if classes else "")
            )
            # The phase line is derived from the outcome, never left green: a non-zero exit,
            # an error line or a timeout means the restore did not go clean.
            if outcome.fatal or outcome.exit_code or outcome.classifier.error_lines or outcome.timed_out:
                ph.status = "failed"
            if outcome.fatal:
                self.abort("restore")
            self.restored = True

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

    def teardown(self) -> None:
        try:
            if self.before is not None:  # before the drop: scratch databases are outside the audit anyway
                isolation.audit_phase(self)
            if self.cluster is not None:
                with self.b.phase("teardown") as ph:
                    self.cluster.close()
                    ph.detail = "stopped and removed the ephemeral cluster"
            else:
                self._drop_scratch()
        finally:  # a download in --work-dir never outlives the drill, whatever the teardown met
            self.guard.close()  # releases the in-use lock; a handed-in database is dropped by the teardown task
            if self.downloaded is not None:
                shutil.rmtree(
                    self.downloaded, ignore_errors=True
                ) if self.downloaded.is_dir() else self.downloaded.unlink(missing_ok=True)

    def _drop_scratch(self) -> None:
        if self.owns_scratch and self.scratch_db:
            with self.b.phase("teardown") as ph:
                try:
                    dropped = self.guard.drop(self.scratch_db)
                except Exception as exc:  # the checks held or failed already; a leftover is the reaper's job
                    if "SCRATCH_UNREACHABLE" in {f.code for f in self.b.findings}:
                        # the server went away earlier (often mid-restore): already said, and already ERROR
                        ph.status, ph.detail = (
                            "failed",
                            f"{self.scratch_db} not dropped: scratch server unreachable",
                        )
                    else:
                        self.b.find(
                            "SCRATCH_NOT_DROPPED",
                            f"scratch database {self.scratch_db!r} was not dropped: "
                            f"{type(exc).__name__}: {exc}; the next run of this drill reaps it",
                            subject=self.scratch_db,
                        )
                        ph.status, ph.detail = "failed", f"{self.scratch_db} left for the reaper"
                else:
                    ph.detail = (
                        f"dropped {self.scratch_db}" if dropped else f"{self.scratch_db} was already gone"
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
        run.scratch(scratch_db)
        # after the guard (a refusal still ends the drill first), before anything is restored
        warm_seconds = warm_up(
            b, suites=list(drill.verify.suites), suites_dir=(base_dir or Path.cwd()) / "expectations"
        )
        run.locate(drill.restore.bin_dir)
        run.fetch()
        run.inspect(drill.restore.bin_dir)
        run.restore()
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
            run.teardown()
        except DrillAborted:
            pass
    from drillbook.drills.backup_restore.verify.suppress import apply_suppressions

    apply_suppressions(b, list(drill.verify.ignore))  # kept and shown; they stop driving the verdict
    b.details = redact_obj(b.details)
    return b.finish()
