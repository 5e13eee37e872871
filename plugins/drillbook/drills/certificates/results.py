"""Build one certificate source item's DrillResult: the kind and target, and the certificate facts it records.

Rule this module enforces: every item's result, whatever its source (endpoint, file,
ACM, or the drill's summary), is built here with the drill's kind, name and controls,
and records its chain's facts and soonest expiry under the same keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drillbook.drills.base import ResultBuilder

if TYPE_CHECKING:
    from drillbook.drills.certificates.catalogue import CertificatesDrill
    from drillbook.drills.certificates.x509facts import CertFacts

KIND = "certificates"


def _builder(drill: CertificatesDrill, target: str) -> ResultBuilder:
    return ResultBuilder(kind=KIND, drill=drill.name, target=target, controls=list(drill.controls))


def _record_facts(builder: ResultBuilder, facts: list[CertFacts]) -> None:
    builder.details["certificates"] = [f.to_detail() for f in facts]
    builder.measurements.counts["certificates"] = len(facts)
    if facts:
        leaf = facts[0]
        builder.measurements.values.update(
            {
                "days_left": round(leaf.days_left, 2),
                "not_after": leaf.not_after.isoformat(),
                "chain_days_left": round(min(f.days_left for f in facts), 2),
                "chain_not_after": min(f.not_after for f in facts).isoformat(),
            }
        )


def _label(facts: CertFacts, role: str, target: str) -> str:
    from drillbook.drills.certificates.x509facts import short_name

    return f"{target} {role} {short_name(facts)}"
