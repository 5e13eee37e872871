"""The pack's results as an OSCAL assessment-results document (OSCAL 1.0.6 JSON), for GRC tools to import.

Rules this module enforces:
- one result per pack: the control, the period, one observation per exception
  (MISSED occurrence, FAIL or ERROR run; at most ``MAX_OBSERVATIONS``, the rest
  named in a remark: population.csv holds all of them) and one finding whose
  target status is ``satisfied`` only when the control's status is VERIFIED;
- OSCAL ids are NCName tokens, so a control id like ``SOC2:A1.2`` becomes
  ``soc2-a1.2`` (``:``, ``(`` and ``)`` are not allowed); the original id is kept
  in the titles and in a ``drillbook-control-id`` property;
- UUIDs are version 5, derived from the control, the period and the chain head,
  so the same pack content gives the same document.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drillbook.evidence.controls import ControlRow

OSCAL_VERSION = "1.0.6"
MAX_OBSERVATIONS = 1000
_NS = uuid.UUID("6f1d2c1e-3b7a-5d7e-9a41-64726c6c626b")


def oscal_id(control: str) -> str:
    """A control id as an OSCAL token: ``SOC2:A1.2`` -> ``soc2-a1.2``, ``NIST:CP-9(1)`` -> ``nist-cp-9.1``."""
    token = re.sub(r"[^A-Za-z0-9._-]+", "-", control.replace("(", ".").replace(")", "")).strip("-").lower()
    return token if token and (token[0].isalpha() or token[0] == "_") else f"c-{token}"


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def assessment_results(
    row: ControlRow, *, start: datetime, end: datetime, head: str, created: datetime, version: str
) -> dict[str, Any]:
    """The OSCAL document for one control's pack."""

    def uid(*parts: object) -> str:
        return str(
            uuid.uuid5(_NS, "/".join(str(p) for p in (row.control, _ts(start), _ts(end), head, *parts)))
        )

    token = oscal_id(row.control)
    observations = []
    for number, exc in enumerate(row.exceptions[:MAX_OBSERVATIONS]):
        what = (
            "missed: no run in its window" if exc.what == "MISSED" else f"run {exc.run_id} ended {exc.what}"
        )
        observations.append(
            {
                "uuid": uid("observation", number),
                "title": f"{exc.what} {exc.drill} {_ts(exc.at)}",
                "description": f"Drill {exc.drill} ({exc.kind}) occurrence at {_ts(exc.at)}: {what}.",
                "methods": ["TEST"],
                "types": ["finding"],
                "collected": _ts(exc.at),
                **({"props": [{"name": "ledger-seq", "value": str(exc.seq)}]} if exc.seq is not None else {}),
            }
        )
    satisfied = row.status == "VERIFIED"
    result: dict[str, Any] = {
        "uuid": uid("result"),
        "title": f"drillbook drills for {row.control}",
        "description": (
            f"{row.expected} expected occurrences of {', '.join(row.drills)}; {row.covered} ran, "
            f"{row.passes} of {row.runs} runs passed, {row.missed} missed, {row.failed} FAIL/ERROR. "
            f"Status: {row.status_words}."
        ),
        "start": _ts(start),
        "end": _ts(end),
        "props": [
            {"name": "drillbook-control-id", "value": row.control},
            {"name": "chain-head", "value": head},
        ],
        "reviewed-controls": {"control-selections": [{"include-controls": [{"control-id": token}]}]},
        "findings": [
            {
                "uuid": uid("finding"),
                "title": f"{row.control}: {row.status}",
                "description": row.status_words,
                "target": {
                    "type": "objective-id",
                    "target-id": f"{token}_obj",
                    "status": {"state": "satisfied" if satisfied else "not-satisfied"},
                },
                **(
                    {"related-observations": [{"observation-uuid": o["uuid"]} for o in observations]}
                    if observations
                    else {}
                ),
            }
        ],
    }
    if observations:
        result["observations"] = observations
    if len(row.exceptions) > MAX_OBSERVATIONS:
        result["remarks"] = (
            f"{len(row.exceptions) - MAX_OBSERVATIONS} more exceptions are listed in population.csv "
            "of the same evidence pack."
        )
    return {
        "assessment-results": {
            "uuid": uid("document"),
            "metadata": {
                "title": f"drillbook evidence pack: {row.control} {_ts(start)} to {_ts(end)}",
                "last-modified": _ts(created),
                "version": version,
                "oscal-version": OSCAL_VERSION,
            },
            "import-ap": {
                "href": "#drillbook-catalogue",
                "remarks": "The assessment plan is drillbook's catalogue: each drill's schedule and objectives.",
            },
            "results": [result],
        }
    }
