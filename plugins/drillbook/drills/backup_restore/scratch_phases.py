"""The drill's scratch phases: the guard first, and the drop last whatever happened.

Rules this module enforces (called by drill.py):
- the scratch guard runs first: a refusal (``SCRATCH_UNSAFE``) ends the drill
  before anything is located, dumped, created or dropped;
- a scratch database this call created is dropped before it returns, whatever
  happened (a stop signal included: ``DRILL_INTERRUPTED``); a drop that fails
  after the checks is ``SCRATCH_NOT_DROPPED`` (low), never an ERROR, and the
  database is left to the reaper; one handed in (created by an Airflow setup task) is left for the
  teardown task.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from drillbook.drills.backup_restore import audit, isolation
from drillbook.drills.backup_restore.scratch import SourceUnreachable
from drillbook.errors import ScratchUnsafe
from drillbook.resources import pg

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.drill import _Drill


def scratch_phase(run: _Drill, given: str | None) -> None:
    with run.b.phase("scratch") as ph:
        if run.drill.restore.target == "ephemeral":  # started in restore, once the dump's major is known
            run.b.checked()
            ph.detail = "a private ephemeral cluster, started for the restore"
            return
        try:
            run.guard.check_server()
            run.before = audit.snapshot(run.scratch_dsn)
            # A superuser scratch role is recorded, not failed: the filter still applies, but the
            # server's own permission checks no longer back it up (docs/backup_restore.md, Isolation).
            run.b.details["scratch_role_superuser"] = audit.is_superuser(run.scratch_dsn)
            if given:
                run.guard.adopt(given)  # registered by drillbook, and locked while this run uses it
                if not run.guard.is_empty(given):  # a retried task: restore into a clean database
                    run.guard.reset(given)
                    run.b.details["scratch_reset"] = True
                run.scratch_db = given
            else:
                run.scratch_db = run.guard.create(drill=run.drill.name, run_id=run.run_id, now=run.start)
                run.owns_scratch = True
        except SourceUnreachable as exc:
            run.b.find("SOURCE_UNREACHABLE", str(exc), subject=pg.describe(run.source_dsn or ""))
            ph.status, ph.detail = "failed", "the guard could not ask the source which server it is"
            run.abort("scratch")
        except ScratchUnsafe as exc:
            run.b.find("SCRATCH_UNSAFE", str(exc), subject=pg.describe(run.scratch_dsn))
            ph.status, ph.detail = "failed", "refused by the scratch guard"
            run.abort("scratch")
        except Exception as exc:  # psycopg.OperationalError and friends: the server is not there
            if type(exc).__module__.startswith("psycopg"):
                run.b.find("SCRATCH_UNREACHABLE", f"scratch server {pg.describe(run.scratch_dsn)}: {exc}")
                ph.status, ph.detail = "failed", "scratch server unreachable"
                run.abort("scratch")
            raise
        run.b.checked()
        ph.detail = f"{run.scratch_db} on {pg.describe(run.scratch_dsn).rsplit('/', 1)[0]}"
        if run.b.details.get("scratch_role_superuser"):
            ph.detail += (
                " (scratch role is a superuser: only the dump filter stands between a dump and the server)"
            )
        run.b.details["scratch_database"] = run.scratch_db


def teardown_phase(run: _Drill) -> None:
    try:
        if run.before is not None:  # before the drop: scratch databases are outside the audit anyway
            isolation.audit_phase(run)
        if run.cluster is not None:
            with run.b.phase("teardown") as ph:
                run.cluster.close()
                ph.detail = "stopped and removed the ephemeral cluster"
        else:
            _drop_scratch(run)
    finally:  # a download in --work-dir never outlives the drill, whatever the teardown met
        run.guard.close()  # releases the in-use lock; a handed-in database is dropped by the teardown task
        if run.downloaded is not None:
            shutil.rmtree(
                run.downloaded, ignore_errors=True
            ) if run.downloaded.is_dir() else run.downloaded.unlink(missing_ok=True)


def _drop_scratch(run: _Drill) -> None:
    if run.owns_scratch and run.scratch_db:
        with run.b.phase("teardown") as ph:
            try:
                dropped = run.guard.drop(run.scratch_db)
            except Exception as exc:  # the checks held or failed already; a leftover is the reaper's job
                if "SCRATCH_UNREACHABLE" in {f.code for f in run.b.findings}:
                    # the server went away earlier (often mid-restore): already said, and already ERROR
                    ph.status, ph.detail = (
                        "failed",
                        f"{run.scratch_db} not dropped: scratch server unreachable",
                    )
                else:
                    run.b.find(
                        "SCRATCH_NOT_DROPPED",
                        f"scratch database {run.scratch_db!r} was not dropped: "
                        f"{type(exc).__name__}: {exc}; the next run of this drill reaps it",
                        subject=run.scratch_db,
                    )
                    ph.status, ph.detail = "failed", f"{run.scratch_db} left for the reaper"
            else:
                ph.detail = f"dropped {run.scratch_db}" if dropped else f"{run.scratch_db} was already gone"
