"""Checks that need more than one field or files beside the catalogue.

Each check takes the validated catalogue and yields ``(location, message)``;
the loader turns the location into a line number. A drill kind adds its check
to ``CHECKS`` here (for example: a data-quality suite must exist and parse).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from drillbook.catalogue.models import Catalogue

Problem = tuple[tuple[str | int, ...], str]


def _reference_files_exist(catalogue: Catalogue, *, gx_check: bool = False) -> Iterator[Problem]:
    for index, drill in enumerate(catalogue.drills):
        if drill.kind == "backup_restore" and drill.verify.reference:
            ref = Path(drill.verify.reference)
            if not ref.is_absolute():
                ref = catalogue.base_dir / ref
            if not ref.is_file():
                yield (("drills", index, "verify", "reference"), f"reference file {str(ref)!r} does not exist; create it with `drillbook reference write`")


def _data_quality_suites(catalogue: Catalogue, *, gx_check: bool = False) -> Iterator[Problem]:
    # imported here, not at the top: the suite checker is only needed when validating
    from drillbook.drills.data_quality.suites import catalogue_problems

    yield from catalogue_problems(catalogue, gx_check=gx_check)


CHECKS: list[Callable[..., Iterator[Problem]]] = [_reference_files_exist, _data_quality_suites]


def run_checks(catalogue: Catalogue, *, gx_check: bool = False) -> list[Problem]:
    """Every file check; ``gx_check`` builds suites with GX too (the entry point decides, never sys.modules)."""
    problems: list[Problem] = []
    for check in CHECKS:
        problems.extend(check(catalogue, gx_check=gx_check))
    return problems
