"""The ``alert_path`` kind: its catalogue model, run, DAG and CLI, as the registry sees them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drillbook.drills.alert_path.catalogue import AlertPathDrill
from drillbook.drills.registry import DrillKind, Resources, RunSpec

if TYPE_CHECKING:
    from drillbook.result import DrillResult


def run(spec: RunSpec, resources: Resources) -> list[DrillResult]:
    """Send a canary down every path of the drill (or ``options["paths"]``), one result each."""
    from drillbook.drills.alert_path.drill import run_alert_path

    drill: Any = spec.drill
    return run_alert_path(
        drill=drill, clients=resources, on_phase=spec.on_phase, paths=spec.options.get("paths")
    )


KIND = DrillKind(
    name="alert_path",
    model=AlertPathDrill,
    summary="send a test alert down each path and prove it arrived",
    run="drillbook.drills.alert_path.kind:run",
    dag="drillbook.drills.alert_path.dag:build_dag",
    cli="drillbook.drills.alert_path.cli",
    tags=("slack", "sns_sqs", "webhook"),
    negative="drillbook.drills.negative_inputs:broken_alert_path",
    expected_negative=frozenset({"ALERT_PATH_UNREACHABLE", "ALERT_NOT_DELIVERED"}),
)
