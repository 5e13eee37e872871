"""The finding codes, one module per area: one code, one meaning, forever.

Rules every code obeys:
- a code is never reused for a different meaning; retire a code by leaving it
  in its module with ``retired=True`` rather than deleting it;
- ``blocks_verification`` codes mean "could not verify": they make the verdict
  ERROR, never PASS or FAIL.

This package defines only the row type and must import none of its modules:
``drillbook.findings`` registers their rows in the order of docs/findings.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from drillbook.result import Severity


@dataclass(frozen=True)
class FindingSpec:
    code: str
    severity: Severity
    title: str
    hint: str
    area: str
    blocks_verification: bool = False
    retired: bool = False
