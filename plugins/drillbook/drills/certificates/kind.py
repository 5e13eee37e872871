"""The ``certificates`` kind: its catalogue model, run, DAG and CLI, as the registry sees them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drillbook.drills.certificates.catalogue import CertificatesDrill
from drillbook.drills.registry import DrillKind, Resources, RunSpec

if TYPE_CHECKING:
    from drillbook.result import DrillResult


def run(spec: RunSpec, resources: Resources) -> list[DrillResult]:
    """Every endpoint, file certificate and ACM certificate of the drill, one result each."""
    from drillbook.drills.certificates.drill import run_certificates

    def acm_client(acm: Any) -> Any:
        return resources.aws(acm.connection, "acm", acm.region)

    return run_certificates(spec.drill, base_dir=spec.base_dir, acm_client_factory=acm_client)  # type: ignore[arg-type]


KIND = DrillKind(
    name="certificates",
    model=CertificatesDrill,
    summary="check certificate expiry on endpoints, files and ACM",
    run="drillbook.drills.certificates.kind:run",
    dag="drillbook.drills.certificates.dag:build_dag",
    cli="drillbook.drills.certificates.cli",
    negative="drillbook.drills.negative_inputs:broken_certificates",
    expected_negative=frozenset({"CERT_EXPIRED"}),
)
