"""Codes of the alert-path drill.

The rules every code obeys are in ``drillbook.finding_codes``; ``drillbook.findings`` registers the rows.
"""

from __future__ import annotations

from drillbook.finding_codes import FindingSpec
from drillbook.result import Severity

_S = Severity
SPECS: list[FindingSpec] = [
    FindingSpec(
        "ALERT_NOT_DELIVERED",
        _S.CRITICAL,
        "A test alert was sent but never seen at the far end",
        "Check the subscription / channel / receiver behind this path; real alerts are not arriving either.",
        "alert_path",
    ),
    FindingSpec(
        "ALERT_SLOW",
        _S.HIGH,
        "A test alert arrived later than the delivery objective",
        "Check queues and rate limits on the path; alerts are delayed.",
        "alert_path",
    ),
    FindingSpec(
        "ALERT_REJECTED",
        _S.CRITICAL,
        "The alert path refused the test alert",
        "Check the token, permissions and routing of the path named in the detail.",
        "alert_path",
    ),
    FindingSpec(
        "ALERT_PATH_UNREACHABLE",
        _S.CRITICAL,
        "The alert path could not be reached",
        "Check the endpoint URL, DNS and network from the worker.",
        "alert_path",
        True,
    ),
    FindingSpec(
        "ALERT_READBACK_FAILED",
        _S.CRITICAL,
        "The test alert was sent but the drill could not read the far end to confirm it",
        "Check the read-back access named in the detail (Slack channels:history scope, SQS ReceiveMessage, the read-back URL and its credentials).",
        "alert_path",
        True,
    ),
    FindingSpec(
        "ALERT_CLEANUP_FAILED",
        _S.LOW,
        "The test alert was delivered but could not be resolved or deleted",
        "Resolve or delete the canary by hand; check the token's permissions.",
        "alert_path",
    ),
    FindingSpec(
        "ALERT_SUPPRESSED",
        _S.CRITICAL,
        "The test alert was accepted but suppressed: a silence, an inhibit rule, a maintenance window or a snooze stopped the page",
        "Remove or narrow the silence / inhibit rule / maintenance window named in the detail; real alerts matching it page nobody either.",
        "alert_path",
    ),
    FindingSpec(
        "ALERT_UNROUTED",
        _S.CRITICAL,
        "The test alert was routed to a receiver, escalation policy or team that does not page on-call",
        "Fix the route (matchers, labels, continue) or the service's escalation policy / team so alerts like the canary reach the receiver named in the catalogue.",
        "alert_path",
    ),
    FindingSpec(
        "ALERT_LOW_URGENCY",
        _S.CRITICAL,
        "The test alert reached the right escalation policy or team at an urgency that pages nobody (a low-urgency PagerDuty incident, an Opsgenie P5 alert)",
        "Make the PagerDuty service's urgency high (or severity-based with the canary's severity among the high ones) or stop the Opsgenie alert policy lowering it to P5; or give the path the labels (severity, priority) that real paging alerts carry.",
        "alert_path",
    ),
]
