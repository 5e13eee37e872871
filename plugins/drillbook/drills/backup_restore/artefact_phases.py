"""The drill's locate and fetch phases: find the newest backup and bring it to local disk, checked.

Rules this module enforces (called by drill.py):
- ``locate``: no backup is ``BACKUP_MISSING`` (naming the path looked at) and
  stops the drill; a backup older than the RPO objective is ``BACKUP_STALE``;
  a live dump that fails or a store that does not answer stops it too; the
  source is only ever read (live dumps are read-only; see locate.py);
- ``fetch``: a size or sha256 that differs from what the store lists is
  ``FETCH_FAILED`` and stops the drill; no digest to check is ``ARTEFACT_UNVERIFIED``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from drillbook.catalogue.common import format_duration, resolve_relative
from drillbook.drills.backup_restore import fetch as fetch_mod
from drillbook.drills.backup_restore import locate as locate_mod
from drillbook.resources import pg

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.drill import _Drill


def _mb(size: int | None) -> str:
    return "?" if size is None else f"{size / 1e6:.1f} MB"


def locate_phase(run: _Drill, bin_dir: str | None) -> None:
    spec = run.drill.backup
    location = (
        spec.location or ""
    )  # a physical backup never reaches this drill (drills.backup_restore.physical)
    with run.b.phase("locate") as ph:
        if spec.is_live:
            keep_in = spec.keep_live_dumps_in or ""
            keep = run.work_dir / "live" if not keep_in or keep_in.startswith("s3://") else Path(keep_in)
            try:
                run.artefact, version = locate_mod.take_live_dump(
                    source_dsn=run.source_dsn or "",
                    drill=run.drill.name,
                    keep_in=keep,
                    bin_dir=bin_dir,
                    timeout=run.drill.restore.timeout,
                    now=run.start,
                )
            except locate_mod.LiveDumpFailed as exc:
                run.b.find(
                    exc.code,
                    f"source {pg.describe(run.source_dsn or '')}: {exc}",
                    subject=pg.describe(run.source_dsn or ""),
                )
                ph.status, ph.detail = "failed", f"live dump failed ({exc.code})"
                run.abort("locate")
            except Exception as exc:
                if type(exc).__module__.startswith("psycopg"):
                    run.b.find("SOURCE_UNREACHABLE", f"source {pg.describe(run.source_dsn or '')}: {exc}")
                    ph.status = "failed"
                    run.abort("locate")
                raise
            run.b.environment["live_pg_dump"] = version
            if keep_in.startswith("s3://"):
                uri = locate_mod.keep_on_s3(run.artefact, url=keep_in, s3_client=run._s3())
                run.b.details["live_dump_kept_at"] = uri
        elif spec.is_s3:
            try:
                run.artefact = locate_mod.locate_s3(url=location, pattern=spec.pattern, s3_client=run._s3())
            except (
                fetch_mod.transfer_errors()
            ) as exc:  # the store did not answer: not a missing backup, not a crash
                run.b.find(
                    "FETCH_FAILED",
                    f"listing {spec.location} failed: {type(exc).__name__}: {exc}",
                    subject=spec.location,
                )
                ph.status, ph.detail = "failed", "the backup store did not answer"
                run.abort("locate")
        else:
            run.artefact = locate_mod.locate_local(
                location=location, pattern=spec.pattern, base_dir=run.base_dir
            )
        run.b.checked()
        if run.artefact is None:
            where = location
            if not spec.is_s3 and not spec.is_live:  # say exactly which path was looked at
                tried = str(resolve_relative(location, run.base_dir))
                where = tried if tried == location else f"{location} (tried {tried})"
            where += f" matching {spec.pattern!r}" if spec.pattern else ""
            run.b.find("BACKUP_MISSING", f"no backup found at {where}", subject=spec.location)
            ph.status, ph.detail = "failed", "no backup found"
            run.abort("locate")
        art = run.artefact
        age = locate_mod.newest_age_seconds(art, run.start)
        run.b.checked()
        if age > run.drill.objectives.rpo:
            run.b.find(
                "BACKUP_STALE",
                f"the newest backup {art.name!r} is {format_duration(age)} old, RPO objective "
                f"{format_duration(run.drill.objectives.rpo)}",
                subject=art.uri,
                detail={"age_seconds": round(age, 1), "modified": art.modified.isoformat()},
            )
        run.b.measurements.values["backup_age_seconds"] = round(age, 1)
        run.b.details["artefact"] = {
            "uri": art.uri,
            "name": art.name,
            "size": art.size,
            "modified": art.modified.isoformat(),
            "live": art.live,
        }
        ph.detail = f"{art.name} ({_mb(art.size)}, {format_duration(age)} old)"


def fetch_phase(run: _Drill) -> None:
    art = run.artefact
    assert art is not None
    with run.b.phase("fetch") as ph:
        if art.is_s3:
            try:
                outcome = fetch_mod.fetch_s3(art, s3_client=run._s3(), work_dir=run.work_dir / "fetch")
            except fetch_mod.FetchBroken as exc:  # the partial download is already gone
                run.b.checked()
                run.b.find("FETCH_FAILED", str(exc), subject=art.uri)
                ph.status, ph.detail = "failed", "download broke"
                run.abort("fetch")
            run.downloaded = outcome.path
        else:
            outcome = fetch_mod.check_local(art)
        run.b.measurements.counts["artefact_bytes"] = outcome.size
        if not outcome.size_ok:
            run.b.checked()
            run.b.find(
                "FETCH_FAILED",
                f"{art.name!r}: got {outcome.size} bytes, the store lists {outcome.expected_size}",
                subject=art.uri,
                detail={"expected_size": outcome.expected_size, "size": outcome.size},
            )
            ph.status, ph.detail = "failed", "size mismatch"
            run.abort("fetch")
        if outcome.digest_ok is None:
            run.b.find(
                "ARTEFACT_UNVERIFIED",
                f"{art.name!r} has no .sha256 sidecar and no sha256 metadata",
                subject=art.uri,
            )
            ph.detail = f"{_mb(outcome.size)}, no digest to check against"
            return
        run.b.checked()
        if not outcome.digest_ok:
            run.b.find(
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
            run.abort("fetch")
        ph.detail = f"{_mb(outcome.size)}, sha256 matches its {outcome.digest_source}"
