"""Verify tiers: cheaper ladders for very large databases, always reported as partial.

Rules this module enforces:
- ``verify.tier: full`` (the default) runs every rung on every table;
- ``fast`` verifies the schema only: ``verify.structure`` and
  ``verify.server`` run, the rungs that read rows (volume, semantics,
  integrity, quality) are ``skipped`` with the tier as the reason;
- ``sample`` runs every rung, but volume counts and integrity checks
  (sequence/column pairs, amcheck) only the tables named in ``verify.tables``;
  semantics and quality run as configured (their SQL and suites are named);
- a tier below ``full`` is never a full PASS: it adds ``PARTIAL_VERIFICATION``
  (low, so the verdict can still be PASS) naming the tier and what was not
  verified, and ``details.verify.tier`` / ``details.verify.partial``, which the
  CLI, the JUnit report and Slack show as "partial". A drill that must prove
  every row runs ``full``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.catalogue import VerifySpec
    from drillbook.drills.backup_restore.verify.ladder import Ladder

#: Rungs that read rows; the fast tier skips them.
DATA_RUNGS = ("verify.volume", "verify.semantics", "verify.integrity", "verify.quality")


def skipped_by_tier(verify: VerifySpec, rung: str) -> str | None:
    """Why ``rung`` does not run at this tier, or None when it runs."""
    if verify.tier == "fast" and rung in DATA_RUNGS:
        return "skipped: verify.tier fast checks the schema only"
    return None


def report_partial(ladder: Ladder) -> None:
    """PARTIAL_VERIFICATION and the tier facts when the tier is not ``full``."""
    verify = ladder.verify
    ladder.facts["tier"] = verify.tier
    if verify.tier == "full":
        ladder.facts["partial"] = False
        return
    if verify.tier == "fast":
        what = "schema only: row counts, semantic checks, sequences, indexes and suites were not verified"
    else:
        what = (
            f"sample of {len(verify.tables)} tables ({', '.join(verify.tables[:10])}"
            f"{', ...' if len(verify.tables) > 10 else ''}): row counts, sequences and indexes of the other "
            "tables were not verified"
        )
    ladder.facts["partial"] = True
    ladder.builder.find(
        "PARTIAL_VERIFICATION",
        f"verify.tier {verify.tier}: {what}; this is a partial verification, not a full PASS",
        subject=f"tier {verify.tier}",
        detail={"tier": verify.tier, "tables": ", ".join(verify.tables)},
    )
