"""DAGs of ``backup_restore`` drills: reap, create scratch, restore and verify, record, drop scratch.

Rules this module enforces:
- ``restore_and_verify`` is ONE task (locate -> fetch -> inspect -> restore ->
  verify -> measure, timed phases inside): the fetched artefact lives on one
  worker's disk, and two tasks may run on two machines;
- ``create_scratch`` is an Airflow setup task and ``drop_scratch`` its teardown:
  the scratch database is dropped even when the drill or the record task
  fails; both go through the scratch guard (``ScratchGuard``), so the teardown
  can only drop a marked ``drillbook_scratch_*`` database;
- a setup that could not create the database does not fail the run without
  evidence: it hands ``None`` on, and the drill then reports why
  (``SCRATCH_UNSAFE``, ``SCRATCH_UNREACHABLE``) in a recorded result;
- ``record`` writes the evidence before Slack is told (``runtime.report``); a
  retried ``record`` writes no second row (the ledger is idempotent per
  dag_id, run_id, task_id, map_index); a FAIL or ERROR verdict then fails it,
  so the run is red;
- ``reap_scratch`` drops this drill's registered, unused scratch databases left
  by killed workers (never another drill's: see ``scratch_registry``); its
  names become ``SCRATCH_REAPED`` (info) findings, and prefixed databases that
  are not in the registry ``SCRATCH_UNREGISTERED`` (low); for a drill with
  ``restore.target: ephemeral`` it also stops and removes the ephemeral
  clusters killed drills left on the worker it runs on (``SCRATCH_REAPED``
  too; a cluster a live drill holds is left).
Connections are resolved at task time through the provider hooks; parsing
imports nothing heavy.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from drillbook.airflow.factory import drill_dag, drill_task

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from drillbook.catalogue import Catalogue
    from drillbook.drills.backup_restore.catalogue import BackupRestoreDrill

log = logging.getLogger(__name__)


def _doc(drill: BackupRestoreDrill) -> str:
    from drillbook.catalogue.common import format_duration

    return "\n".join(
        [
            "Restores the newest backup into a scratch database, proves the right data came back "
            "(structure, volume, semantics, integrity, quality) and measures RTO and RPO.",
            "",
            f"* **Backup:** `{drill.backup.where}`"
            + (f" matching `{drill.backup.pattern}`" if drill.backup.pattern else ""),
            (
                f"* **Recovery target:** `{drill.backup.target if isinstance(drill.backup.target, str) else drill.backup.target.model_dump(mode='json')}`"
                " (a private cluster, unix socket only, archiving off)"
                if drill.backup.is_physical
                else f"* **Scratch connection:** `{drill.scratch.connection}` (databases `drillbook_scratch_*`, "
                f"reaped after {format_duration(drill.scratch.max_age)})"
            ),
            f"* **Objectives:** RTO {format_duration(drill.objectives.rto)}, RPO {format_duration(drill.objectives.rpo)}",
            "",
            "Tasks: `reap_scratch` → `create_scratch` (setup) → `restore_and_verify` → `record` → `drop_scratch` (teardown).",
        ]
    )


def _guard(drill: BackupRestoreDrill) -> Any:
    from drillbook.airflow.runtime import resolve_dsn
    from drillbook.drills.backup_restore.scratch import ScratchGuard

    source = resolve_dsn(drill.source.connection) if drill.source else None
    return ScratchGuard(scratch_dsn=resolve_dsn(drill.scratch.connection), source_dsn=source)


def reap_now(drill: BackupRestoreDrill) -> dict[str, list[str]]:
    """Drop this drill's leftover scratch databases; a reaper that cannot run logs why and never blocks the drill."""
    clusters = _reap_clusters(drill)
    try:
        report = _guard(drill).reap(drill=drill.name, max_age=drill.scratch.max_age)
    except Exception as exc:  # the reaper is housekeeping, the drill still has to run
        log.warning("reaper for %s could not run: %s: %s", drill.name, type(exc).__name__, exc)
        return {"dropped": [], "unregistered": [], "clusters": clusters}
    for name in report.dropped:
        log.info("reaped scratch database %s", name)
    for name in report.unregistered:
        log.warning(
            "database %s has the scratch prefix but is not in drillbook's scratch registry: not dropped", name
        )
    for name, why in report.failed.items():
        log.warning("leftover scratch database %s not dropped: %s", name, why)
    return {"dropped": report.dropped, "unregistered": report.unregistered, "clusters": clusters}


def _reap_clusters(drill: BackupRestoreDrill) -> list[str]:
    """Ephemeral clusters of killed drills on this worker, stopped and removed (ephemeral drills only)."""
    if drill.restore.target != "ephemeral":
        return []
    from drillbook.drills.backup_restore.ephemeral import reap_left_clusters

    try:
        removed = reap_left_clusters()
    except Exception as exc:  # housekeeping: the next cluster start reaps again
        log.warning(
            "ephemeral cluster reaper for %s could not run: %s: %s", drill.name, type(exc).__name__, exc
        )
        return []
    for root in removed:
        log.info("reaped ephemeral cluster %s left by a killed drill", root)
    return removed


def create_now(drill: BackupRestoreDrill, run_id: str) -> str | None:
    """Create the run's scratch database; None (logged) when the guard or the server says no."""
    try:
        return str(
            _guard(drill).create(drill=drill.name, run_id=run_id, hold=False)
        )  # the work task adopts it
    except Exception as exc:  # the drill task turns the same cause into a recorded finding
        log.warning("scratch database for %s not created: %s: %s", drill.name, type(exc).__name__, exc)
        return None


def drop_now(drill: BackupRestoreDrill, name: str | None) -> bool:
    if not name:
        return False
    return bool(_guard(drill).drop(name))


def _connection_missing(drill: BackupRestoreDrill, exc: Exception) -> Any:
    from drillbook.drills.base import ResultBuilder

    b = ResultBuilder(
        kind="backup_restore",
        drill=drill.name,
        target=drill.backup.where,
        controls=list(drill.controls),
        objectives={"rto_seconds": drill.objectives.rto, "rpo_seconds": drill.objectives.rpo},
    )
    b.find("CONNECTION_MISSING", str(exc))
    return b.finish()


def restore_now(
    drill: BackupRestoreDrill,
    catalogue: Catalogue,
    *,
    scratch_db: str | None,
    run_id: str,
    reaped: dict[str, list[str]] | list[str] | None,
) -> Any:
    """Run the drill with Airflow-resolved connections (task time); returns the DrillResult."""
    import tempfile
    from pathlib import Path

    from drillbook.airflow.runtime import aws_client, ledger_for, resolve_dsn
    from drillbook.drills.backup_restore.drill import previous_pass, run_backup_restore
    from drillbook.errors import ConnectionNotConfigured
    from drillbook.settings import load_settings, timeouts_of

    try:
        scratch_dsn = resolve_dsn(drill.scratch.connection)
        source_dsn = resolve_dsn(drill.source.connection) if drill.source else None
        uses_s3 = drill.backup.is_s3 or (drill.backup.keep_live_dumps_in or "").startswith("s3://")
        s3 = aws_client(drill.backup.connection, "s3") if uses_s3 and drill.backup.connection else None
    except ConnectionNotConfigured as exc:
        return _connection_missing(drill, exc)
    try:
        previous = previous_pass(ledger_for(catalogue), drill.name)
    except (
        Exception
    ) as exc:  # no trend is better than no drill; the record task will say if the ledger is down
        log.warning("last PASS of %s not read from the ledger: %s: %s", drill.name, type(exc).__name__, exc)
        previous = None
    with tempfile.TemporaryDirectory(prefix="drillbook-restore-") as tmp:
        return run_backup_restore(
            drill=drill,
            scratch_dsn=scratch_dsn,
            source_dsn=source_dsn,
            s3_client=s3,
            work_dir=Path(tmp),
            scratch_db=scratch_db,
            run_id=run_id,
            base_dir=catalogue.base_dir,
            previous=previous,
            reaped=reaped.get("dropped", []) if isinstance(reaped, dict) else (reaped or ()),
            unregistered=reaped.get("unregistered", []) if isinstance(reaped, dict) else (),
            reaped_clusters=reaped.get("clusters", []) if isinstance(reaped, dict) else (),
            on_phase=lambda p: log.info(
                "phase %-18s %-14s %7.2fs  %s", p.name, p.status, p.seconds, p.detail
            ),
            timeouts=timeouts_of(load_settings()),  # the task is the entry point: settings read here, once
        )


def physical_now(drill: BackupRestoreDrill, catalogue: Catalogue, *, reaped: list[str] | None) -> Any:
    """Run a physical-backup drill (task time): the tool's ``PGBACKREST_*``/``BARMAN_*`` variables come from the
    worker's environment, the WAL-verified state lives in ``DRILLBOOK_STATE_DIR`` (default: a directory in the
    temporary directory; losing it only means the next run checks the whole archive again)."""
    import os
    import tempfile
    from pathlib import Path

    from drillbook.airflow.runtime import ledger_for
    from drillbook.drills.backup_restore.drill import previous_pass
    from drillbook.drills.backup_restore.physical.drill import run_physical

    try:
        previous = previous_pass(ledger_for(catalogue), drill.name)
    except Exception as exc:  # no trend is better than no drill
        log.warning("last PASS of %s not read from the ledger: %s: %s", drill.name, type(exc).__name__, exc)
        previous = None
    env = {k: v for k, v in os.environ.items() if k.startswith(("PGBACKREST_", "BARMAN_"))}
    from drillbook.settings import load_settings  # the task is the entry point

    state = load_settings().state_dir or Path(tempfile.gettempdir()) / "drillbook-state"
    return run_physical(
        drill=drill,
        state_dir=state,
        base_dir=catalogue.base_dir,
        previous=previous,
        env=env,
        reaped_clusters=reaped or (),
        on_phase=lambda p: log.info("phase %-18s %-14s %7.2fs  %s", p.name, p.status, p.seconds, p.detail),
    )


def _build_physical_dag(drill: BackupRestoreDrill, catalogue: Catalogue) -> DAG:
    """``dr_backup_restore__<name>`` for a physical backup: reap_clusters → restore_and_verify → record.

    The private cluster is created, recovered and removed inside ``restore_and_verify`` (its data
    directory lives on that worker); ``reap_clusters`` removes clusters killed drills left on the worker.
    """
    from airflow.sdk import get_current_context

    def reap_clusters() -> list[str]:
        from drillbook.drills.backup_restore.ephemeral import reap_left_clusters

        try:
            return reap_left_clusters()
        except Exception as exc:  # housekeeping: the drill's own cluster start reaps again
            log.warning("cluster reaper for %s could not run: %s: %s", drill.name, type(exc).__name__, exc)
            return []

    def restore_and_verify(reaped: list[str] | None) -> dict[str, Any]:
        return physical_now(drill, catalogue, reaped=reaped).to_json_dict()

    def record(result_json: dict[str, Any]) -> dict[str, Any]:
        from drillbook.airflow.runtime import report
        from drillbook.result import DrillResult

        result = DrillResult.model_validate(result_json)
        return report(result, drill=drill, catalogue=catalogue, context=get_current_context())  # type: ignore[arg-type]

    with drill_dag(drill, catalogue, doc_md=_doc(drill)) as dag:
        reaped = drill_task(reap_clusters, "reap_clusters", retries=0)
        result = drill_task(restore_and_verify, "restore_and_verify", reaped)
        drill_task(record, "record", result)
    return dag


def build_dag(drill: BackupRestoreDrill, catalogue: Catalogue) -> DAG:
    """``dr_backup_restore__<name>``: reap → create_scratch (setup) → restore_and_verify → record → drop_scratch (teardown)."""
    from airflow.sdk import get_current_context

    if drill.backup.is_physical:
        return _build_physical_dag(drill, catalogue)

    def reap_scratch() -> dict[str, list[str]]:
        return reap_now(drill)

    def create_scratch() -> str | None:
        return create_now(drill, get_current_context()["run_id"])

    def restore_and_verify(scratch_db: str | None, reaped: dict[str, list[str]] | None) -> dict[str, Any]:
        result = restore_now(
            drill, catalogue, scratch_db=scratch_db, run_id=get_current_context()["run_id"], reaped=reaped
        )
        return result.to_json_dict()

    def record(result_json: dict[str, Any]) -> dict[str, Any]:
        from drillbook.airflow.runtime import report
        from drillbook.result import DrillResult

        result = DrillResult.model_validate(result_json)
        return report(result, drill=drill, catalogue=catalogue, context=get_current_context())  # type: ignore[arg-type]

    def drop_scratch(scratch_db: str | None) -> bool:
        return drop_now(drill, scratch_db)

    with drill_dag(drill, catalogue, doc_md=_doc(drill)) as dag:
        reaped = drill_task(reap_scratch, "reap_scratch", retries=0)
        scratch = drill_task(create_scratch, "create_scratch")
        reaped >> scratch
        result = drill_task(restore_and_verify, "restore_and_verify", scratch, reaped)
        recorded = drill_task(record, "record", result)
        drop = drill_task(drop_scratch, "drop_scratch", scratch).as_teardown(setups=scratch)
        recorded >> drop
    return dag
