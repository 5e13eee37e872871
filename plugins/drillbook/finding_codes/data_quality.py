"""Codes of the data-quality drill.

The rules every code obeys are in ``drillbook.finding_codes``; ``drillbook.findings`` registers the rows.
"""

from __future__ import annotations

from drillbook.finding_codes import FindingSpec
from drillbook.result import Severity

_S = Severity
SPECS: list[FindingSpec] = [
    FindingSpec(
        "DQ_EXPECTATION_FAILED",
        _S.HIGH,
        "A data-quality expectation failed",
        "Look at the observed value and the unexpected sample; fix the data or the pipeline that loaded it.",
        "data_quality",
    ),
    FindingSpec(
        "DQ_VALIDATION_ERROR",
        _S.CRITICAL,
        "The data-quality validation could not run",
        "Check that the table and columns exist and the suite's arguments are valid.",
        "data_quality",
        True,
    ),
]
