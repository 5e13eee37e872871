"""The ``backup_restore`` kind: its catalogue model, run, checks, DAG and CLI, as the registry sees them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from drillbook.drills.backup_restore.catalogue import BackupRestoreDrill
from drillbook.drills.registry import DrillKind, Problem, Resources, RunSpec

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue
    from drillbook.result import DrillResult


def run(spec: RunSpec, resources: Resources) -> list[DrillResult]:
    """Restore the newest backup of ``spec.drill`` into scratch, verify and measure it (one result)."""
    from drillbook.drills.backup_restore.drill import run_backup_restore

    drill: Any = spec.drill
    uses_s3 = drill.backup.is_s3 or (drill.backup.keep_live_dumps_in or "").startswith("s3://")
    s3 = resources.aws(drill.backup.connection, "s3", None) if uses_s3 and drill.backup.connection else None
    return [
        run_backup_restore(
            drill=drill,
            scratch_dsn=resources.dsn(drill.scratch.connection),
            source_dsn=resources.dsn(drill.source.connection) if drill.source else None,
            s3_client=s3,
            work_dir=spec.work_dir,
            base_dir=spec.base_dir,
            ledger=spec.ledger,
            on_phase=spec.on_phase,
            **spec.options,
        )
    ]


def reference_exists(drill: Any, catalogue: Catalogue) -> Iterator[Problem]:
    """A reference named by ``verify.reference`` must exist beside the catalogue."""
    if drill.verify.reference:
        from pathlib import Path

        ref = Path(drill.verify.reference)
        if not ref.is_absolute():
            ref = catalogue.base_dir / ref
        if not ref.is_file():
            yield (
                ("verify", "reference"),
                f"reference file {str(ref)!r} does not exist; create it with `drillbook reference write`",
            )


def suites_valid(drill: Any, catalogue: Catalogue) -> Iterator[Problem]:
    """Every suite run on the restored data must exist, be valid and name its table."""
    from drillbook.drills.data_quality.suites import default_suites_dir, suite_messages

    suites_dir = default_suites_dir(catalogue)
    for position, name in enumerate(drill.verify.suites):
        for message in suite_messages(
            name, suites_dir, need_table=True, gx_check=catalogue.gx_suites_checked
        ):
            yield (("verify", "suites", position), message)


def check_inputs(drill: Any, catalogue: Catalogue) -> Iterator[str]:
    """The files ``reference_exists`` and ``suites_valid`` look at."""
    from drillbook.drills.data_quality.suites import default_suites_dir, suite_inputs

    if drill.verify.reference:
        from pathlib import Path

        ref = Path(drill.verify.reference)
        yield str(ref if ref.is_absolute() else catalogue.base_dir / ref)
    suites_dir = default_suites_dir(catalogue)
    for name in drill.verify.suites:
        yield from map(str, suite_inputs(name, suites_dir))


KIND = DrillKind(
    name="backup_restore",
    model=BackupRestoreDrill,
    summary="restore the newest backup into scratch and verify it",
    run="drillbook.drills.backup_restore.kind:run",
    checks=(
        "drillbook.drills.backup_restore.kind:reference_exists",
        "drillbook.drills.backup_restore.kind:suites_valid",
    ),
    inputs="drillbook.drills.backup_restore.kind:check_inputs",
    dag="drillbook.drills.backup_restore.dag:build_dag",
    cli="drillbook.drills.backup_restore.cli",
    negative="drillbook.drills.negative_inputs:broken_backup_restore",
    expected_negative=frozenset({"ARCHIVE_TRUNCATED"}),
)
