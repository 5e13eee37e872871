"""Suppressions (``verify.ignore``): accept a known finding in writing, without hiding it.

Rules this module enforces:
- a rule is ``{code, subject, reason}``; the reason is required (the catalogue
  refuses a rule without one) and codes that block verification cannot be
  suppressed at all, so a check that could not run never turns green this way;
- a matched finding is KEPT: it stays in the result, the ledger and every
  report, marked with ``suppressed`` = the reason, and only stops driving the
  verdict (``decide_verdict`` skips it);
- ``subject`` matches exactly or as a glob (``public.legacy_*``); no subject
  matches every finding of the code;
- a rule that matched nothing is reported (``SUPPRESSION_UNUSED``, low), so a
  stale suppression is noticed instead of silently waiting to hide a new problem;
- what was suppressed is listed in ``details.suppressions``.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.catalogue import Suppression
    from drillbook.drills.base import ResultBuilder
    from drillbook.result import Finding


def matches(rule: Suppression, item: Finding) -> bool:
    """True when ``rule`` covers ``item`` (same code; subject equal, globbed, or not given)."""
    if rule.code != item.code or item.suppressed is not None:
        return False
    if rule.subject is None:
        return True
    subject = item.subject or ""
    return subject == rule.subject or fnmatchcase(subject, rule.subject)


def apply_suppressions(builder: ResultBuilder, rules: list[Suppression]) -> None:
    """Mark the findings the rules cover as suppressed; report the rules that matched nothing."""
    if not rules:
        return
    used: list[dict[str, Any]] = []
    unused: list[Suppression] = []
    for rule in rules:
        hits = 0
        for i, item in enumerate(builder.findings):
            if matches(rule, item):
                builder.findings[i] = item.model_copy(update={"suppressed": rule.reason})
                hits += 1
        if hits:
            used.append({"code": rule.code, "subject": rule.subject, "reason": rule.reason, "findings": hits})
        else:
            unused.append(rule)
    for rule in unused:
        where = f" with subject {rule.subject!r}" if rule.subject else ""
        builder.find(
            "SUPPRESSION_UNUSED",
            f"verify.ignore suppresses {rule.code}{where} ({rule.reason!r}) but no such finding was raised: "
            "remove the rule if the problem is fixed",
            subject=f"{rule.code}{':' + rule.subject if rule.subject else ''}",
            detail={"code": rule.code, "subject": rule.subject or "", "reason": rule.reason},
        )
    builder.details["suppressions"] = {
        "applied": used,
        "unused": [{"code": r.code, "subject": r.subject, "reason": r.reason} for r in unused],
    }
