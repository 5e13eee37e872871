"""The registry of finding codes: every finding a drill emits is made here from a registered code.

Rules this module enforces:
- every finding a drill emits is made by ``finding(code, ...)`` from a code
  registered here; an unknown code is a programming error (``KeyError``);
- a code is registered once: the rows come from ``drillbook.finding_codes``
  (one module per area, where new codes go) and a second row with the same
  code fails the import;
- ``docs/findings.md`` is generated from this table (``drillbook findings
  --markdown``) and a test fails when the two differ.
"""

from __future__ import annotations

from drillbook.finding_codes import (
    FindingSpec,
    alert_path,
    backup_restore,
    certificates,
    data_quality,
    general,
    physical,
)
from drillbook.result import Finding, Severity

# in the order of docs/findings.md
_SPECS: list[FindingSpec] = [
    *general.ANY_DRILL,
    *backup_restore.SPECS,
    *physical.SPECS,
    *data_quality.SPECS,
    *certificates.SPECS,
    *alert_path.SPECS,
    *general.NEGATIVE,
    *general.LEDGER,
]

REGISTRY: dict[str, FindingSpec] = {}
for _spec in _SPECS:
    if _spec.code in REGISTRY:  # pragma: no cover - guarded by tests
        raise RuntimeError(f"finding code {_spec.code!r} registered twice")
    REGISTRY[_spec.code] = _spec


def spec(code: str) -> FindingSpec:
    """Return the registered spec of ``code``; unknown codes are a programming error."""
    try:
        return REGISTRY[code]
    except KeyError:
        raise KeyError(f"finding code {code!r} is not registered in drillbook.findings") from None


def finding(
    code: str,
    message: str | None = None,
    *,
    severity: Severity | str | None = None,
    hint: str | None = None,
    subject: str | None = None,
    detail: dict | None = None,
) -> Finding:
    """Build a finding from the registry; ``message`` adds the specific facts to the title."""
    s = spec(code)
    return Finding(
        code=code,
        severity=Severity(severity) if severity is not None else s.severity,
        message=message or s.title,
        hint=hint or s.hint,
        subject=subject,
        blocks_verification=s.blocks_verification,
        detail=detail or {},
    )


def markdown_table() -> str:
    """Render the registry as the table in docs/findings.md."""
    lines = [
        "# Finding codes",
        "",
        "Generated from `plugins/drillbook/findings.py` by `drillbook findings --markdown`; "
        "a test fails when this file and the registry differ. A code is never reused for "
        "another meaning. *Blocks verification* means the drill could not verify: the "
        "verdict is ERROR, which pages on-call exactly like FAIL.",
        "",
        "| code | area | default severity | blocks verification | meaning | fix hint |",
        "|---|---|---|---|---|---|",
    ]
    for s in _SPECS:
        blocks = "yes (ERROR)" if s.blocks_verification else ""
        title = s.title + (" *(retired)*" if s.retired else "")
        lines.append(f"| `{s.code}` | {s.area} | {s.severity.value} | {blocks} | {title} | {s.hint} |")
    return "\n".join(lines) + "\n"
