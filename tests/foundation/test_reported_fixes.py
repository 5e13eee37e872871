"""Reported defects of the foundation (issue 10 item 10), each reproduced red first."""

from __future__ import annotations

from drillbook.drills.base import ResultBuilder
from drillbook.result import Verdict


def builder() -> ResultBuilder:
    return ResultBuilder(kind="backup_restore", drill="d", target="t")


def test_zero_checks_and_only_an_info_finding_carries_nothing_checked():
    b = builder()
    b.find("SCRATCH_REAPED", "dropped scratch database 'x' left by an earlier run", subject="x")
    result = b.finish()
    assert result.verdict is Verdict.ERROR
    assert result.codes() == ["SCRATCH_REAPED", "NOTHING_CHECKED"]


def test_zero_checks_and_a_low_finding_carries_nothing_checked():
    b = builder()
    b.find("ARTEFACT_UNVERIFIED")
    assert "NOTHING_CHECKED" in b.finish().codes()


def test_a_blocking_finding_is_its_own_reason():
    b = builder()
    b.find("SCRATCH_UNREACHABLE", "scratch server down")
    result = b.finish()
    assert result.verdict is Verdict.ERROR
    assert result.codes() == ["SCRATCH_UNREACHABLE"]


def test_a_checked_run_with_an_info_finding_passes():
    b = builder()
    b.find("SCRATCH_REAPED", "dropped", subject="x")
    b.checked()
    result = b.finish()
    assert result.verdict is Verdict.PASS and "NOTHING_CHECKED" not in result.codes()
