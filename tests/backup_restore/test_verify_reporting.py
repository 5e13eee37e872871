"""Tiers, suppressions, --fail-on, --junit and `drillbook doctor`, on real dumps of the seeded shop."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from drillbook.drills.backup_restore.catalogue import VerifySpec
from tests.backup_restore.conftest import codes, make_drill

BEHIND = "select setval('public.orders_id_seq', 5)"
QUIET = {"min_rows": {}, "rpo_probe": None, "amcheck": False}


def _dump(variant, statement: str | None = None) -> Path:
    """A -Fc dump of the shop (changed by ``statement``) with its .sha256 sidecar, so nothing else is found."""
    import hashlib

    import psycopg

    def mutate(dsn: str) -> None:
        if statement:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(statement)

    dump = variant(mutate)
    Path(str(dump) + ".sha256").write_text(hashlib.sha256(dump.read_bytes()).hexdigest() + "  shop.dump\n")
    return dump


def _behind(variant) -> Path:
    return _dump(variant, BEHIND)


# --- tiers ----------------------------------------------------------------------------------------------
def test_fast_tier_is_partial_never_a_full_pass(variant, drill_runner):
    from drillbook.cli.common import render_text

    dump = _dump(variant)
    result = drill_runner(make_drill(str(dump.parent), verify={**QUIET, "tier": "fast"}))
    statuses = {p.name: p.status for p in result.phases}
    assert statuses["verify.structure"] == "ok"
    assert all(
        statuses[n] == "skipped"
        for n in ("verify.volume", "verify.semantics", "verify.integrity", "verify.quality")
    )
    assert codes(result) == ["PARTIAL_VERIFICATION"]
    assert result.details["verify"]["partial"] is True and result.details["verify"]["tier"] == "fast"
    assert "verdict: partial (tier fast) PASS" in render_text(result)

    full = drill_runner(make_drill(str(dump.parent), verify=QUIET))
    assert "PARTIAL_VERIFICATION" not in codes(full) and full.details["verify"]["partial"] is False
    assert codes(full) == [] and "verdict: PASS" in render_text(full)


def test_slack_report_says_partial(dumps, drill_runner):
    from drillbook.notify.render import RenderOptions, render_result

    result = drill_runner(make_drill(str(dumps["custom"].parent), verify={**QUIET, "tier": "fast"}))
    report = render_result(result, None, None, options=RenderOptions())
    assert "PASS (partial, tier fast)" in str(report.main.blocks)


def test_sample_tier_reads_only_the_named_tables(variant, drill_runner):
    dump = _behind(variant)  # orders' sequence is behind, but orders is not in the sample
    sample = drill_runner(
        make_drill(str(dump.parent), verify={**QUIET, "tier": "sample", "tables": ["customers"]})
    )
    assert set(sample.details["verify"]["volume"]["rows"]) == {"public.customers"}
    assert "SEQUENCE_BEHIND" not in codes(sample) and "PARTIAL_VERIFICATION" in codes(sample)
    whole = drill_runner(
        make_drill(str(dump.parent), verify={**QUIET, "tier": "sample", "tables": ["orders"]})
    )
    assert "SEQUENCE_BEHIND" in codes(whole) and whole.verdict.value == "FAIL"


def test_tier_settings_are_validated():
    with pytest.raises(ValidationError, match=r"verify\.tables is empty"):
        VerifySpec.model_validate({"tier": "sample"})
    with pytest.raises(ValidationError, match="tier 'sample' only"):
        VerifySpec.model_validate({"tables": ["a"]})


# --- suppressions ---------------------------------------------------------------------------------------
def test_suppressed_finding_is_kept_shown_and_does_not_drive_the_verdict(variant, drill_runner, ledger_dsn):
    from drillbook.cli.common import render_text
    from drillbook.ledger.store import Ledger

    dump = _behind(variant)
    red = drill_runner(make_drill(str(dump.parent), verify=QUIET))
    assert red.verdict.value == "FAIL"
    rules = [
        {
            "code": "SEQUENCE_BEHIND",
            "subject": "public.orders_*",
            "reason": "ticket OPS-1: setval runs after restore",
        },
        {"code": "MATVIEW_UNPOPULATED", "reason": "refreshed by the runbook"},
    ]
    result = drill_runner(make_drill(str(dump.parent), verify={**QUIET, "ignore": rules}))
    assert result.verdict.value == "PASS"
    (kept,) = [f for f in result.findings if f.code == "SEQUENCE_BEHIND"]
    assert kept.suppressed == "ticket OPS-1: setval runs after restore"
    (unused,) = [f for f in result.findings if f.code == "SUPPRESSION_UNUSED"]
    assert "MATVIEW_UNPOPULATED" in unused.message
    assert result.details["suppressions"]["applied"][0]["findings"] == 1
    text = render_text(result)
    assert "SEQUENCE_BEHIND" in text and "SUPPRESSED: ticket OPS-1" in text
    from drillbook.run.context import RunContext

    record = Ledger(ledger_dsn).record(result, RunContext.for_cli(kind=result.kind, drill=result.drill))
    stored = Ledger(ledger_dsn).get(record.seq)
    assert [f["suppressed"] for f in stored.result["findings"] if f["code"] == "SEQUENCE_BEHIND"] == [
        "ticket OPS-1: setval runs after restore"
    ]
    assert stored.verdict == "PASS"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"code": "SEQUENCE_BEHIND", "reason": " "}, "written reason"),
        ({"code": "SEQUENCE_BEHIND"}, "reason"),
        ({"code": "SCRATCH_UNREACHABLE", "reason": "flaky"}, "cannot be suppressed"),
        ({"code": "NO_SUCH_CODE", "reason": "x y z"}, "unknown finding code"),
    ],
)
def test_bad_suppressions_are_refused(rule, message):
    with pytest.raises(ValidationError, match=message):
        VerifySpec.model_validate({"ignore": [rule]})


# --- --fail-on and --junit ------------------------------------------------------------------------------
def _cli(pg, dump: Path, tmp_path: Path, *extra: str, verify: dict | None = None) -> int:
    from drillbook.cli import main as drillbook

    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"verify": {**QUIET, **(verify or {})}}))
    return drillbook(
        [
            "run",
            "backup-restore",
            "--backup",
            str(dump),
            "--scratch-dsn",
            pg.admin_dsn,
            "--config",
            str(settings),
            *extra,
        ]
    )


def test_fail_on_sets_the_exit_code_not_the_verdict(pg, variant, tmp_path, monkeypatch):
    monkeypatch.delenv("DRILLBOOK_LEDGER_DSN", raising=False)
    dump = _behind(variant)  # SEQUENCE_BEHIND: high, verdict FAIL
    assert _cli(pg, dump, tmp_path) == 1
    assert _cli(pg, dump, tmp_path, "--fail-on", "critical") == 0
    assert _cli(pg, dump, tmp_path, "--fail-on", "high") == 1
    healthy = _cli(
        pg, dump, tmp_path, "--fail-on", "low", verify={"tier": "fast"}
    )  # PARTIAL_VERIFICATION is low
    assert healthy == 1
    assert _cli(pg, dump, tmp_path, "--fail-on", "medium", verify={"tier": "fast"}) == 0


def test_junit_report(pg, variant, tmp_path, monkeypatch):
    monkeypatch.delenv("DRILLBOOK_LEDGER_DSN", raising=False)
    dump = _behind(variant)
    out = tmp_path / "junit.xml"
    assert _cli(pg, dump, tmp_path, "--junit", str(out)) == 1
    root = ET.parse(out).getroot()
    suite = root.find("testsuite")
    assert suite is not None and int(root.get("failures")) >= 1
    names = {c.get("name"): c for c in suite.iter("testcase")}
    assert names["phase verify.integrity"].find("failure") is not None
    behind = next(c for n, c in names.items() if n.startswith("SEQUENCE_BEHIND"))
    assert behind.find("failure").get("type") == "SEQUENCE_BEHIND"
    assert names["phase verify.structure"].find("failure") is None

    fast = tmp_path / "fast.xml"
    assert _cli(pg, dump, tmp_path, "--junit", str(fast), verify={"tier": "fast"}) == 0
    suite = ET.parse(fast).getroot().find("testsuite")
    assert "partial: tier fast" in suite.get("name")
    assert suite.get("failures") == "0" and int(suite.get("skipped")) >= 4

    assert _cli(pg, dump, tmp_path, "--junit", str(tmp_path / "no" / "such" / "dir.xml")) == 2


# --- doctor ---------------------------------------------------------------------------------------------
def _catalogue(tmp_path: Path, dumps_dir: Path, reference: str | None) -> Path:
    verify = {"reference": reference} if reference else {}
    doc = {
        "drills": [
            {
                "name": "shop",
                "kind": "backup_restore",
                "schedule": "@daily",
                "backup": {"location": str(dumps_dir)},
                "scratch": {"connection": "doctor_scratch"},
                "objectives": {"rto": "1h", "rpo": "26h"},
                "verify": verify,
            }
        ]
    }
    path = tmp_path / "drills.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_doctor_ok_and_fail(pg, dumps, tmp_path, monkeypatch, capsys):
    from drillbook.cli import main as drillbook

    pg.execute(
        "postgres",
        "do $$ begin create role doctor_scratch login createdb; "
        "exception when duplicate_object then null; end $$",
    )
    from psycopg.conninfo import make_conninfo

    monkeypatch.setenv("DRILLBOOK_CONN_DOCTOR_SCRATCH", make_conninfo(pg.admin_dsn, user="doctor_scratch"))
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "shop.json").write_text(
        (Path(__file__).parents[2] / "include/references/shop.json").read_text()
    )
    good = _catalogue(tmp_path, dumps["custom"].parent, "refs/shop.json")
    assert drillbook(["doctor", "--catalogue", str(good), "--ledger-dsn", pg.admin_dsn]) == 0
    out = capsys.readouterr().out
    assert "ok    tool pg_restore" in out and "has CREATEDB and is not a superuser" in out
    assert "fail" not in out.replace("0 failed", "")

    bad = _catalogue(tmp_path, tmp_path / "nowhere", "refs/shop.json")
    monkeypatch.setenv("DRILLBOOK_CONN_DOCTOR_SCRATCH", pg.admin_dsn)  # a superuser: warned
    dead_ledger = "host=127.0.0.1 port=1 user=x password=Sekr3tpw dbname=x"
    assert drillbook(["doctor", "--catalogue", str(bad), "--ledger-dsn", dead_ledger]) == 1
    captured = capsys.readouterr()
    assert "warn  drill shop scratch role" in captured.out
    assert "fail  drill shop backup location" in captured.out and "fix:" in captured.out
    assert "fail  ledger" in captured.out
    assert "Sekr3tpw" not in captured.out + captured.err

    broken = _catalogue(
        tmp_path, dumps["custom"].parent, "refs/missing.json"
    )  # the catalogue itself does not load
    assert drillbook(["doctor", "--catalogue", str(broken), "--ledger-dsn", pg.admin_dsn]) == 1
    out = capsys.readouterr().out
    assert "fail  catalogue" in out and "drillbook validate" in out


def test_other_run_commands_share_fail_on_and_junit(tmp_path):
    """The helpers are shared: `run certificates` takes --fail-on and --junit too (an expired file, no server)."""
    from datetime import timedelta

    from drillbook.cli import main as drillbook
    from tests.certificates.pki import make_ca, make_leaf, now

    ca = make_ca()
    expired = make_leaf(ca, not_before=now() - timedelta(days=30), not_after=now() - timedelta(days=1))
    cert, _ = expired.write(tmp_path, "expired")
    out = tmp_path / "certs.xml"
    assert drillbook(["run", "certificates", "--file", str(cert), "--junit", str(out)]) == 1
    cases = [c.get("name") for c in ET.parse(out).getroot().iter("testcase") if c.find("failure") is not None]
    assert any(name.startswith("CERT_EXPIRED") for name in cases)
    # CERT_EXPIRED is critical, so the strictest threshold still fails the run
    assert drillbook(["run", "certificates", "--file", str(cert), "--fail-on", "critical"]) == 1
