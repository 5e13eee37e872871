"""The drill's inspect and restore phases: read the archive, choose the tool, restore into scratch.

Rules this module enforces (called by drill.py):
- ``inspect``: an unreadable or truncated archive, or no restore tool of the
  dump's major version or newer (``VERSION_MISMATCH``), stops the drill before
  anything is restored; ``pg_restore -l`` must read the whole table of contents
  within its timeout; a dump that would leave its scratch database is refused
  (isolation.py);
- ``restore``: the phase line is derived from the outcome, never left green; a
  restore that did not complete stops the drill.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from drillbook.drills.backup_restore import isolation, restore, tools
from drillbook.drills.backup_restore import locate as locate_mod
from drillbook.drills.backup_restore.archive import ArchiveProblem, inspect_archive
from drillbook.drills.backup_restore.lifetime import die_with_parent
from drillbook.resources import pg

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.drill import _Drill


def inspect_phase(run: _Drill, bin_dir: str | None) -> None:
    art = run.artefact
    assert art is not None and art.path is not None
    path = run.downloaded or art.path
    with run.b.phase("inspect") as ph:
        try:
            run.info = info = inspect_archive(path)
        except ArchiveProblem as exc:
            run.b.checked()
            run.b.find(exc.code, f"{art.name!r}: {exc.message}", subject=art.uri)
            ph.status, ph.detail = "failed", exc.message
            run.abort("inspect")
        run.b.checked()
        name = "psql" if info.format.startswith("plain") else "pg_restore"
        run.tool, seen = tools.choose(name, min_major=info.dump_major, bin_dir=bin_dir)
        run.b.checked()
        if run.tool is None:
            run.b.find(
                "VERSION_MISMATCH",
                f"{art.name!r} was written by pg_dump {info.pg_dump_version}; no {name} of major version "
                f">= {info.dump_major} was found (found: {tools.describe(seen)})",
                subject=art.uri,
                detail={"pg_dump_version": info.pg_dump_version, "bin_dir": bin_dir or ""},
            )
            ph.status, ph.detail = "failed", f"no {name} >= {info.dump_major}"
            run.abort("inspect")
        if info.format in ("custom", "directory", "tar"):
            list_toc(run, path, art)
        isolation.prescan_phase(run, path, art, info, ph)
        run.b.environment.update(
            {
                "restore_tool": f"{name} {run.tool.version}",
                "archive_pg_dump": info.pg_dump_version or "unknown",
                "archive_server": info.server_version or "unknown",
            }
        )
        run.b.measurements.values.update(
            {
                "archive_format": info.format,
                "pg_dump_version": info.pg_dump_version,
                "archive_created_at": info.created_at.isoformat() if info.created_at else None,
            }
        )
        run.b.details["archive"] = {
            "format": info.format,
            "pg_dump_version": info.pg_dump_version,
            "server_version": info.server_version,
            "archive_version": info.archive_version,
            "created_at": info.created_at.isoformat() if info.created_at else None,
            "compression": info.compression,
        }
        ph.detail = f"{info.summary()}; {name} {run.tool.version}"


def list_toc(run: _Drill, path: Path, art: locate_mod.Artefact) -> None:
    """``pg_restore -l`` must read the whole table of contents; count the table-data entries.

    The listing is one line per TOC entry (a few MB for the largest schemas), so it is
    captured whole with a timeout: reading stdout then stderr from a Popen could hang
    forever on a stuck tool or deadlock on a full stderr pipe.
    """
    assert run.tool is not None
    try:
        proc = subprocess.run(
            [run.tool.path, "-l", str(path)],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=run.timeouts.toc,
            check=False,
            preexec_fn=die_with_parent(),
        )
    except subprocess.TimeoutExpired:
        run.b.find(
            "ARCHIVE_UNREADABLE",
            f"{art.name!r}: pg_restore -l did not list the table of contents within {run.timeouts.toc}s",
            subject=art.uri,
        )
        run.abort("inspect")
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
        run.b.find(
            code,
            f"{art.name!r}: pg_restore cannot read the table of contents: {err.strip()[-300:]}",
            subject=art.uri,
        )
        run.abort("inspect")
    run.b.measurements.counts.update({"toc_entries": entries, "toc_table_data": data})


def restore_phase(run: _Drill) -> None:
    assert run.info is not None and run.tool is not None and run.artefact is not None
    path = run.downloaded or run.artefact.path
    assert path is not None
    with run.b.phase("restore") as ph:
        spec = run.drill.restore
        into = isolation.start_ephemeral(run) if spec.target == "ephemeral" else run.scratch_db
        assert into is not None
        outcome = restore.run_restore(
            fmt=run.info.format,
            tool=run.tool,
            path=path,
            scratch_db_dsn=pg.with_dbname(run.scratch_dsn, into),
            jobs=spec.jobs,
            no_owner=spec.no_owner,
            timeout=spec.timeout,
            scope=spec.target,
            expected=(f'role "{run.cluster.superuser}" already exists',) if run.cluster else (),
        )
        restore.add_findings(run.b, outcome)
        run.b.checked()
        counts = outcome.classifier.counts
        run.b.measurements.counts["restore_error_lines"] = outcome.classifier.error_lines
        run.b.details["restore"] = {
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
            run.abort("restore")
        run.restored = True
