"""The ``data_quality`` kind: its catalogue model, run, checks, DAG and CLI, as the registry sees them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from drillbook.drills.data_quality.catalogue import DataQualityDrill
from drillbook.drills.registry import DrillKind, Problem, Resources, RunSpec

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue
    from drillbook.result import DrillResult


def run(spec: RunSpec, resources: Resources) -> list[DrillResult]:
    """Validate the drill's table (or query) with its suite, inside PostgreSQL (one result)."""
    from drillbook.drills.data_quality.drill import run_data_quality

    drill: Any = spec.drill
    from drillbook.drills.data_quality.suites import default_suites_dir

    suites_dir = spec.options.get("suites_dir") or (
        spec.base_dir / "expectations" if spec.base_dir else default_suites_dir()
    )
    return [
        run_data_quality(
            drill_name=drill.name,
            dsn=resources.dsn(drill.connection),
            table=drill.table,
            query=drill.query,
            suite=drill.suite,
            suites_dir=suites_dir,
            sample=drill.sample_unexpected,
            sensitive=drill.sensitive_columns,
            controls=drill.controls,
            on_phase=spec.on_phase,
        )
    ]


def suite_valid(drill: Any, catalogue: Catalogue) -> Iterator[Problem]:
    """The drill's suite must exist and be valid."""
    from drillbook.drills.data_quality.suites import default_suites_dir, suite_messages

    for message in suite_messages(
        drill.suite, default_suites_dir(catalogue), need_table=False, gx_check=catalogue.gx_suites_checked
    ):
        yield (("suite",), message)


def check_inputs(drill: Any, catalogue: Catalogue) -> Iterator[str]:
    """The files ``suite_valid`` looks at."""
    from drillbook.drills.data_quality.suites import default_suites_dir, suite_inputs

    yield from map(str, suite_inputs(drill.suite, default_suites_dir(catalogue)))


KIND = DrillKind(
    name="data_quality",
    model=DataQualityDrill,
    summary="validate a table with a Great Expectations suite",
    run="drillbook.drills.data_quality.kind:run",
    checks=("drillbook.drills.data_quality.kind:suite_valid",),
    inputs="drillbook.drills.data_quality.kind:check_inputs",
    dag="drillbook.drills.data_quality.dag:build_dag",
    cli="drillbook.drills.data_quality.cli",
    negative="drillbook.drills.negative_inputs:broken_data_quality",
    expected_negative=frozenset({"DQ_EXPECTATION_FAILED"}),
)
