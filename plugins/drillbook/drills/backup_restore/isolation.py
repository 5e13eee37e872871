"""The drill's isolation steps: judge the dump before the restore, the ephemeral cluster, the side-effect audit.

Rules this module enforces (principle 2 and 6; called by the drill's phases, restore_phases.py and scratch_phases.py):
- ``prescan_phase`` (inspect): a dump that would leave its scratch database is
  refused with ``DUMP_LEAVES_DATABASE`` before anything is restored (prescan.py);
- ``start_ephemeral`` (restore, ``restore.target: ephemeral``): a private
  cluster (ephemeral.py) booted as the dump's own superuser; a dump that
  creates databases is restored from ``postgres`` and the database named by
  ``restore.database`` (or the only one created) is verified, else
  ``CONFIG_INVALID``; a single-database dump goes into a marked scratch database;
  clusters left by killed drills are reaped first (``SCRATCH_REAPED``, info);
- ``audit_phase`` (before teardown, shared server only): the server's
  databases, roles, memberships and tablespaces equal the snapshot taken
  before the restore, else ``SCRATCH_SIDE_EFFECT``; an audit that cannot run
  is ``SCRATCH_UNREACHABLE``, never a silent pass.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from drillbook.drills.backup_restore import audit, prescan
from drillbook.drills.backup_restore.archive import ArchiveInfo
from drillbook.drills.backup_restore.ephemeral import EphemeralCluster, EphemeralUnavailable
from drillbook.drills.backup_restore.scratch import ScratchGuard
from drillbook.resources import pg


def prescan_phase(run: Any, path: Path, art: Any, info: ArchiveInfo, ph: Any) -> None:
    """Refuse a dump that would leave its scratch database before anything is restored (prescan.py)."""
    assert run.tool is not None
    target = run.drill.restore.target
    if info.format.startswith("plain"):
        run.scan = prescan.scan_plain(path, gz=info.format == "plain.gz", target=target)
    else:
        try:
            run.scan = prescan.scan_archive(run.tool.path, path, target=target)
        except subprocess.TimeoutExpired:
            run.b.find(
                "ARCHIVE_UNREADABLE",
                f"{art.name!r}: pg_restore -s did not list the schema within {prescan.SCAN_TIMEOUT_S}s",
                subject=art.uri,
            )
            run.abort("inspect")
    run.b.checked()
    run.b.measurements.counts["dump_statements_judged"] = run.scan.statements
    message = run.scan.refusal_message(cluster=info.cluster, target=target)
    if message:
        first = run.scan.refusals[0]
        run.b.find(
            "DUMP_LEAVES_DATABASE",
            f"{art.name!r}: {message}",
            subject=art.uri,
            detail={
                "line": first.line,
                "scope": first.scope,
                "statement": first.statement,
                "refused_statements": len(run.scan.refusals),
                "cluster_dump": info.cluster,
            },
        )
        kind = "cluster dump" if info.cluster else "dump"
        ph.status, ph.detail = "failed", f"{kind} refused at line {first.line}: {first.reason}"
        run.abort("inspect")


def start_ephemeral(run: Any) -> str:
    """Start the private cluster; return the database psql/pg_restore connects to first."""
    assert run.info is not None
    try:
        superuser = run.scan.superusers[0] if run.scan and run.scan.superusers else "drillbook_ephemeral"
        run.cluster = EphemeralCluster(
            min_major=run.info.dump_major, bin_dir=run.drill.restore.bin_dir, superuser=superuser
        ).start()
    except EphemeralUnavailable as exc:
        run.b.find("EPHEMERAL_UNAVAILABLE", str(exc))
        run.abort("restore")
    for leftover in run.cluster.reaped:
        run.b.find(
            "SCRATCH_REAPED",
            f"an ephemeral cluster left by a killed drill was stopped and removed: {leftover}",
        )
    run.scratch_dsn = run.cluster.dsn("postgres")
    run.b.environment["ephemeral_cluster"] = run.cluster.version
    run.b.environment["ephemeral_network"] = run.cluster.network
    created = run.scan.created_databases if run.scan else []
    if not created and not run.info.cluster:
        run.scratch_db = ScratchGuard(scratch_dsn=run.scratch_dsn).create(
            drill=run.drill.name, run_id=run.run_id, now=run.start
        )
        return run.scratch_db
    wanted = run.drill.restore.database
    if wanted is None and len(created) == 1:
        wanted = created[0]
    if wanted is None or (created and wanted not in created and wanted != "postgres"):
        run.b.find(
            "CONFIG_INVALID",
            f"the dump creates databases {created}; set restore.database to the one to verify"
            + (f" (got {wanted!r})" if wanted else ""),
        )
        run.abort("restore")
    run.scratch_db = wanted
    return "postgres"


def audit_phase(run: Any) -> None:
    """Compare the server's databases and roles with the snapshot taken before the restore (audit.py)."""
    assert run.before is not None
    with run.b.phase("audit") as ph:
        try:
            diff = audit.compare(run.before, audit.snapshot(run.guard.scratch_dsn))
        except Exception as exc:  # an audit that could not run proves nothing
            run.b.find(
                "SCRATCH_UNREACHABLE", f"side-effect audit of {pg.describe(run.guard.scratch_dsn)}: {exc}"
            )
            ph.status, ph.detail = "failed", "audit could not run"
            return
        run.b.checked()
        if diff.empty:
            ph.detail = f"no change outside the scratch database ({len(run.before.objects)} objects compared)"
            return
        run.b.find(
            "SCRATCH_SIDE_EFFECT",
            f"the drill changed the scratch server outside its scratch database: "
            f"{diff.describe()}; nothing was dropped",
            subject=pg.describe(run.guard.scratch_dsn),
            detail={
                "appeared": len(diff.added),
                "disappeared": len(diff.removed),
                "changed": len(diff.changed),
            },
        )
        ph.status, ph.detail = "failed", diff.describe()[:200]
