"""JUnit XML for CI: one ``<testsuite>`` per drill result, one ``<testcase>`` per phase and per finding.

Rules this module enforces:
- the XML says what the terminal says: a failed phase is a ``<failure>``, a
  skipped or not-configured phase is ``<skipped>``; each finding is a test
  case named ``CODE [subject]`` that is an ``<error>`` when it blocks
  verification, a ``<failure>`` when it is at or above the threshold
  (``--fail-on``, else ``high``, the level that fails a verdict), a
  ``<skipped>`` carrying its reason when it was suppressed, and passes otherwise
  (its message in ``<system-out>``);
- a result whose verdict is ERROR always holds an ``<error>`` test case (a
  drill that could not verify never reads green in CI), and a partial tier is
  a property (``partial``) and part of the suite's name;
- every text passes through ``redact``; the file is written whole, UTF-8.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # only written here, never parsed
from pathlib import Path

from drillbook.result import DrillResult, Severity, Verdict
from drillbook.safety.redact import redact


def _suite(result: DrillResult, threshold: Severity) -> ET.Element:
    verify = result.details.get("verify") if isinstance(result.details, dict) else None
    partial = bool(isinstance(verify, dict) and verify.get("partial"))
    name = f"{result.kind}.{result.drill}" + (
        f" (partial: tier {verify.get('tier')})" if partial and verify else ""
    )
    suite = ET.Element(
        "testsuite",
        name=redact(name),
        timestamp=result.started_at.isoformat(),
        time=f"{result.duration_seconds:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("verdict", result.verdict.value),
        ("target", result.target),
        ("partial", str(partial).lower()),
    ):
        ET.SubElement(props, "property", name=key, value=redact(value))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    classname = f"{result.kind}.{result.drill}"
    for phase in result.phases:
        case = ET.SubElement(
            suite, "testcase", classname=classname, name=f"phase {phase.name}", time=f"{phase.seconds:.3f}"
        )
        counts["tests"] += 1
        if phase.status == "failed":
            ET.SubElement(case, "failure", message=redact(phase.detail or "failed"))
            counts["failures"] += 1
        elif phase.status in ("skipped", "not configured"):
            ET.SubElement(case, "skipped", message=redact(phase.detail or phase.status))
            counts["skipped"] += 1
    for item in result.findings:
        label = f"{item.code} [{item.subject}]" if item.subject else item.code
        case = ET.SubElement(suite, "testcase", classname=f"{classname}.findings", name=redact(label))
        counts["tests"] += 1
        text = f"{item.severity.value}: {item.message}\nfix: {item.hint}"
        if item.suppressed is not None:
            ET.SubElement(case, "skipped", message=redact(f"suppressed: {item.suppressed}")).text = redact(
                text
            )
            counts["skipped"] += 1
        elif item.blocks_verification:
            ET.SubElement(case, "error", message=redact(item.message), type=item.code).text = redact(text)
            counts["errors"] += 1
        elif item.severity.at_least(threshold):
            ET.SubElement(case, "failure", message=redact(item.message), type=item.code).text = redact(text)
            counts["failures"] += 1
        else:
            ET.SubElement(case, "system-out").text = redact(text)
    if result.verdict is Verdict.ERROR and counts["errors"] == 0:
        case = ET.SubElement(suite, "testcase", classname=classname, name="verdict")
        ET.SubElement(case, "error", message="the drill could not verify (verdict ERROR)")
        counts["tests"] += 1
        counts["errors"] += 1
    for counter, count in counts.items():
        suite.set(counter, str(count))
    return suite


def write_junit(results: list[DrillResult], path: str | Path, *, fail_on: str | None = None) -> None:
    """Write ``results`` as one JUnit XML file at ``path``."""
    threshold = Severity(fail_on) if fail_on else Severity.HIGH
    root = ET.Element("testsuites", name="drillbook")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for result in results:
        suite = _suite(result, threshold)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    Path(path).write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")
