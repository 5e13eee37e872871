"""Fixtures of the notify tests: a small catalogue, fixed results and ledger records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from drillbook.catalogue import Catalogue, load_catalogue
from drillbook.findings import finding
from drillbook.ledger.records import LedgerRecord
from drillbook.result import DrillResult, Measurements, Phase, Verdict, decide_verdict
from drillbook.run.context import RunContext
from drillbook.safety.redact import forget_secrets

T0 = datetime(2026, 3, 2, 3, 30, tzinfo=UTC)

CATALOGUE = {
    "version": 1,
    "defaults": {
        "owner": "platform-ops",
        "airflow_base_url": "http://airflow.example:8080",
        "slack": {
            "oncall_channel": "#dr-oncall",
            "digest_channel": "#dr-digest",
            "mention": "<!subteam^S0ONCALL>",
            "max_findings": 3,
        },
        "watchdog": {"grace": "1h", "renotify": "24h"},
        "max_unverified": "8d",
    },
    "drills": [
        {
            "name": "web_certs",
            "kind": "certificates",
            "schedule": "0 6 * * *",
            "controls": ["SOC2:CC6.7"],
            "files": ["var/certs"],
        },
        {
            "name": "api_certs",
            "kind": "certificates",
            "schedule": "@hourly",
            "controls": ["SOC2:CC6.7", "ISO27001:A.8.24"],
            "files": ["var/certs"],
            "max_unverified": "2d",
        },
        {
            "name": "quiet_certs",
            "kind": "certificates",
            "schedule": "0 6 * * *",
            "files": ["var/certs"],
            "notify": {"enabled": False},
        },
        {
            "name": "loud_certs",
            "kind": "certificates",
            "schedule": "0 6 * * *",
            "files": ["var/certs"],
            "notify": {"channel": "#alerts", "mention": "<@U0OWNER>", "on": ["PASS", "FAIL", "ERROR"]},
        },
    ],
}


@pytest.fixture
def catalogue_file(tmp_path: Path) -> Path:
    path = tmp_path / "drills.yaml"
    path.write_text(yaml.safe_dump(CATALOGUE, sort_keys=False))
    return path


@pytest.fixture
def catalogue(catalogue_file: Path) -> Catalogue:
    return load_catalogue(catalogue_file)


@pytest.fixture(autouse=True)
def _forget_secrets():
    yield
    forget_secrets()


def make_result(
    verdict: str = "FAIL",
    *,
    drill: str = "web_certs",
    findings=None,
    target: str = "var/certs/web.pem",
    started: datetime = T0,
    rto: float | None = None,
    rpo: float | None = None,
    objectives=None,
    controls=("SOC2:CC6.7",),
    kind: str = "certificates",
) -> DrillResult:
    if findings is None:
        findings = {
            "PASS": [],
            "FAIL": [
                finding(
                    "CERT_EXPIRED",
                    "web.pem expired 3 days ago",
                    subject="web.pem",
                    detail={"not_after": "2026-02-27"},
                ),
                finding("CERT_EXPIRING", "api.pem expires in 12 days", subject="api.pem"),
            ],
            "ERROR": [finding("CERT_UNREADABLE", "var/certs/broken.pem is not PEM", subject="broken.pem")],
        }[verdict]
    derived = decide_verdict(findings, checks_run=2)
    assert derived.value == verdict, (derived, verdict)
    return DrillResult(
        kind=kind,
        drill=drill,
        target=target,
        verdict=Verdict(verdict),
        findings=findings,
        measurements=Measurements(rto_seconds=rto, rpo_seconds=rpo, counts={"checks_run": 2}),
        objectives=objectives or {},
        controls=list(controls),
        phases=[
            Phase(name="discover", status="ok", seconds=0.25, detail="3 files"),
            Phase(name="inspect", status="ok", seconds=1.5),
        ],
        started_at=started,
        finished_at=started + timedelta(seconds=1.75),
        environment={"drillbook": "0.1.0", "python": "3.11.7"},
    )


def make_ctx(**kw) -> RunContext:
    base = dict(
        dag_id="dr_certificates__web_certs",
        run_id="scheduled__2026-03-02T03:30:00+00:00",
        task_id="check",
        try_number=1,
    )
    base.update(kw)
    return RunContext(**base)


def make_record(
    result: DrillResult,
    *,
    seq: int = 42,
    record_type: str = "drill",
    ctx: RunContext | None = None,
    recorded_at: datetime | None = None,
) -> LedgerRecord:
    ctx = ctx or make_ctx()
    return LedgerRecord(
        seq=seq,
        recorded_at=recorded_at or result.finished_at,
        record_type=record_type,
        kind=result.kind,
        drill=result.drill,
        target=result.target,
        verdict=result.verdict.value,
        controls=list(result.controls),
        dag_id=ctx.dag_id,
        run_id=ctx.run_id,
        task_id=ctx.task_id,
        map_index=ctx.map_index,
        try_number=ctx.try_number,
        trigger=ctx.trigger,
        result=result.to_json_dict(),
        prev_hash="0" * 64,
        hash="ab12cd34ef56" + "0" * 52,
    )
