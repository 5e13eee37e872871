"""Codes that drillbook itself emits for any drill: the run, notify, the watchdog, negative drills and the ledger.

``ANY_DRILL`` opens the table in docs/findings.md, ``NEGATIVE`` and ``LEDGER`` close it.

The rules every code obeys are in ``drillbook.finding_codes``; ``drillbook.findings`` registers the rows.
"""

from __future__ import annotations

from drillbook.finding_codes import FindingSpec
from drillbook.result import Severity

_S = Severity
ANY_DRILL: list[FindingSpec] = [
    FindingSpec(
        "DRILL_CRASHED",
        _S.CRITICAL,
        "The drill raised an unexpected error",
        "Read the task log for the traceback; fix the cause and re-run the drill.",
        "general",
        True,
    ),
    FindingSpec(
        "NOTHING_CHECKED",
        _S.CRITICAL,
        "The drill finished without running a single check",
        "Configure at least one target or check for this drill; an empty drill proves nothing.",
        "general",
        True,
    ),
    FindingSpec(
        "CONFIG_INVALID",
        _S.CRITICAL,
        "The drill's configuration is invalid",
        "Run `drillbook validate` and fix the catalogue entry it names.",
        "general",
        True,
    ),
    FindingSpec(
        "DRILL_NOT_RUN",
        _S.CRITICAL,
        "Airflow failed the drill's task before the drill could record a result",
        "Read the cause in the message: an API server the worker could not reach, a killed worker or an import error; fix it and re-run the drill.",
        "general",
        True,
    ),
    FindingSpec(
        "CONNECTION_MISSING",
        _S.CRITICAL,
        "A connection the drill needs is not defined",
        "Define the Airflow Connection (or the DRILLBOOK_* environment variable) named in the message.",
        "general",
        True,
    ),
    FindingSpec(
        "NOTIFY_FAILED",
        _S.HIGH,
        "The report could not be delivered to Slack; on-call was not told",
        "Check the Slack connection's token and the bot's channel membership; the evidence row is intact.",
        "notify",
    ),
    FindingSpec(
        "NOTIFY_NOT_CONFIGURED",
        _S.INFO,
        "No Slack connection: the report went to the local outbox only",
        "Define the drillbook_slack connection to deliver reports to Slack.",
        "notify",
    ),
    FindingSpec(
        "NOTIFY_REDELIVERED",
        _S.INFO,
        "A report that was not delivered at the time has now reached Slack",
        "Nothing to do; the NOTIFY_FAILED / NOTIFY_NOT_CONFIGURED row of the original run says why it was late.",
        "notify",
    ),
    FindingSpec(
        "DRILL_MISSED",
        _S.HIGH,
        "A drill produced no result when its schedule said it should have",
        "Check that the DAG is unpaused, the scheduler is healthy and the DAG has no import error.",
        "watchdog",
    ),
    FindingSpec(
        "DRILL_NEVER_VERIFIED",
        _S.HIGH,
        "A drill has only produced ERROR results for longer than the grace period",
        "Fix what stops the drill from running its checks (connection, permissions, tools).",
        "watchdog",
    ),
    FindingSpec(
        "DRILL_STALE",
        _S.HIGH,
        "The newest PASS of a drill is older than its max_unverified",
        "Investigate the failing runs; recovery has not been proven recently.",
        "watchdog",
    ),
]

NEGATIVE: list[FindingSpec] = [
    FindingSpec(
        "NEGATIVE_DRILL_PASSED",
        _S.INFO,
        "On a deliberately broken input the drill turned red with the expected code and on-call was paged",
        "Nothing to do: the detector and the page path work.",
        "negative",
    ),
    FindingSpec(
        "DETECTOR_BLIND",
        _S.CRITICAL,
        "On a deliberately broken input the drill did not turn red with the expected code, or its page reached nobody",
        "Read the inner verdict and codes in the detail: a drill that stays green on broken input proves nothing when it is green on real input; fix the check or the page route before trusting its PASS results.",
        "negative",
    ),
]

LEDGER: list[FindingSpec] = [
    FindingSpec(
        "EVIDENCE_SPOOLED",
        _S.MEDIUM,
        "The ledger could not be written: the result was kept in the local evidence spool",
        "Bring the ledger database back; the next run or `drillbook ledger flush` replays the spool in order. Keep the spool file until then.",
        "ledger",
    ),
    FindingSpec(
        "EVIDENCE_QUARANTINED",
        _S.HIGH,
        "Evidence spool entries could not be replayed and were moved to the spool's .rejected file",
        "An auditor reads `<spool>.rejected` (each entry with its reason and raw text), records what is genuine by hand or re-runs the drill, then moves the file away; this finding is on every report of this worker until then.",
        "ledger",
    ),
    FindingSpec(
        "CHECKPOINT_UNSIGNED",
        _S.LOW,
        "The ledger checkpoint was stored unsigned: no signing key is configured",
        "Set DRILLBOOK_CHECKPOINT_KEY (or the drillbook_checkpoint_key connection) to an Ed25519 private key; see docs/ledger.md.",
        "ledger",
    ),
    FindingSpec(
        "LEDGER_TAMPERED",
        _S.CRITICAL,
        "The evidence ledger does not verify: records were edited, removed, backdated or its guards switched off",
        "Run `drillbook evidence verify` and investigate the record it names; restore the ledger from backup or a signed export.",
        "ledger",
    ),
    FindingSpec(
        "LEDGER_UNVERIFIABLE",
        _S.CRITICAL,
        "The evidence ledger could not be verified: verify could not read it or its checkpoints",
        "Read the message (unreachable database, missing grant, unreadable checkpoint copy), fix it and press Verify again or run `drillbook evidence verify`.",
        "ledger",
        True,
    ),
]
