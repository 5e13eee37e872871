"""The verdict rule: only a drill that ran checks and found nothing at or above high is PASS."""

from __future__ import annotations

import pytest

from drillbook.drills.base import ResultBuilder
from drillbook.errors import DrillAborted
from drillbook.findings import REGISTRY, finding
from drillbook.result import Finding, Severity, Verdict, decide_verdict
from drillbook.safety.redact import forget_secrets, redact, redact_url, register_secret


def builder() -> ResultBuilder:
    return ResultBuilder(kind="backup_restore", drill="d", target="t", controls=["SOC2:A1.2"])


def test_checks_that_held_pass():
    b = builder()
    b.checked(3)
    assert b.finish().verdict is Verdict.PASS


def test_a_drill_that_checked_nothing_is_never_pass():
    result = builder().finish()
    assert result.verdict is Verdict.ERROR
    assert result.codes() == ["NOTHING_CHECKED"]


def test_high_finding_fails_low_finding_passes():
    b = builder()
    b.checked()
    b.find("ARTEFACT_UNVERIFIED")
    assert b.finish().verdict is Verdict.PASS
    b.find("BACKUP_STALE", "newest backup is 30h old")
    assert b.finish().verdict is Verdict.FAIL


def test_could_not_verify_is_error_even_with_passing_checks():
    b = builder()
    b.checked(10)
    b.find("SCRATCH_UNSAFE")
    assert b.finish().verdict is Verdict.ERROR


def test_a_crash_in_a_phase_is_error_with_the_exception_recorded():
    b = builder()
    b.checked()
    with pytest.raises(DrillAborted), b.phase("restore"):
        raise RuntimeError("pg_restore vanished")
    result = b.finish()
    assert result.verdict is Verdict.ERROR
    assert result.findings[0].code == "DRILL_CRASHED"
    assert "pg_restore vanished" in result.findings[0].message
    assert result.phases[0].status == "failed"


def test_verdict_exit_codes_and_green():
    assert [v.exit_code for v in (Verdict.PASS, Verdict.FAIL, Verdict.ERROR)] == [0, 1, 2]
    assert [v for v in Verdict if v.is_green] == [Verdict.PASS]


def test_decide_verdict_severity_threshold():
    medium = finding("CERT_EXPIRING", severity="medium")
    high = finding("CERT_EXPIRING", severity="high")
    assert decide_verdict([medium], checks_run=1) is Verdict.PASS
    assert decide_verdict([high], checks_run=1) is Verdict.FAIL


def test_unknown_code_is_a_programming_error():
    with pytest.raises(KeyError, match="NOT_A_CODE"):
        finding("NOT_A_CODE")


def test_finding_text_and_detail_are_redacted_and_bounded():
    register_secret("hunter2-very-secret")
    try:
        f = finding(
            "RESTORE_ERROR",
            "failed with password hunter2-very-secret",
            detail={"stderr": "x" * 5000 + " hunter2-very-secret"},
        )
        assert "hunter2" not in f.message and "hunter2" not in str(f.detail)
        assert len(str(f.detail["stderr"])) <= 500
    finally:
        forget_secrets()


def test_finding_has_no_field_that_could_hold_a_row():
    # A finding is evidence, not a data dump: pin its fields so adding one is a conscious decision.
    # ``suppressed`` holds the catalogue's written reason (verify.ignore, at most 500 characters), never data.
    assert set(Finding.model_fields) == {
        "code",
        "severity",
        "message",
        "hint",
        "subject",
        "blocks_verification",
        "detail",
        "suppressed",
    }


def test_every_registered_code_has_a_hint_and_a_severity():
    for code, spec in REGISTRY.items():
        assert code.isupper() and spec.hint and spec.title
        assert isinstance(spec.severity, Severity)


@pytest.mark.parametrize(
    ("raw", "leak"),
    [
        ("postgresql://app:pa55word@db:5432/shop", "pa55word"),
        ("host=db password=pa55word dbname=x", "pa55word"),
        ("token xoxb-123456-abcdef-ghijkl", "xoxb-123456-abcdef-ghijkl"),
        ("Authorization: Bearer abcdefghijkl123", "abcdefghijkl123"),
        ("key AKIAABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMNOP"),
        ("https://hooks.slack.com/services/T000/B000/XXXXSECRET", "XXXXSECRET"),
        ("PGPASSWORD=pa55word pg_restore", "pa55word"),
    ],
)
def test_redact_masks_credential_shapes(raw, leak):
    assert leak not in redact(raw)


@pytest.mark.parametrize("text", ["/etc/passwd:1", "/run/secrets/token:3: bad line", r"C:\keys\secret:7"])
def test_redact_leaves_a_file_line_that_names_a_credential_file_alone(text):
    assert redact(text) == text


def test_redact_still_masks_key_value_after_a_path():
    assert redact("/etc/app.conf:3: password=pa55word") == "/etc/app.conf:3: password=***"
    assert redact("passwd: pa55word") == "passwd: ***"
    assert redact("db.password: pa55word") == "db.password: ***"  # a dotted key is still a key


def test_redact_url_keeps_host_and_hides_path_secret():
    assert (
        redact_url("https://events.example.com:8443/v2/enqueue/abc123token?key=zzz")
        == "https://events.example.com:8443/v2/***?***"
    )


def test_every_log_line_is_redacted_whoever_logs_it(caplog):
    import logging

    from drillbook.safety.redact import install_log_redaction

    install_log_redaction()  # what every entry point (CLI main, DAG factories, demo) does first
    register_secret("s3cr3t-token-value-42")
    try:
        with caplog.at_level(logging.INFO):
            logging.getLogger("drillbook.drills.some.child").info(
                "connecting with %s", "s3cr3t-token-value-42"
            )
            logging.getLogger("httpx").info("POST https://hooks.example/s3cr3t-token-value-42 200")
            try:
                raise RuntimeError("auth failed for password=hunter2x")
            except RuntimeError:
                logging.getLogger("airflow.task").exception("task failed")
        text = caplog.text
        assert "s3cr3t-token-value-42" not in text and "hunter2x" not in text
        assert text.count("***") >= 3
    finally:
        forget_secrets()


def test_pg_tools_reach_the_server_psycopg_reaches():
    # libpq tools get every server-selecting keyword of the DSN (hostaddr, options, client certs...);
    # inherited PG* variables stay, exactly as psycopg's libpq honours them for the same DSN.
    from drillbook.resources.pg import tool_env

    env = tool_env(
        "host=db.internal hostaddr=127.0.0.1 port=6432 user=restorer password=pw-xyz-123 dbname=shop "
        "options='-c statement_timeout=0' sslmode=verify-full sslcert=/c.pem sslkey=/k.pem"
    )
    assert env["PGHOST"] == "db.internal" and env["PGHOSTADDR"] == "127.0.0.1" and env["PGPORT"] == "6432"
    assert (
        env["PGOPTIONS"] == "-c statement_timeout=0"
        and env["PGSSLCERT"] == "/c.pem"
        and env["PGSSLKEY"] == "/k.pem"
    )
    assert env["PGPASSWORD"] == "pw-xyz-123" and env["PGDATABASE"] == "shop"
