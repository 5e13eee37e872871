"""Rendering: the exact blocks of a FAIL and an ERROR, and Slack's limits under abuse."""

from __future__ import annotations

from drillbook.findings import finding
from drillbook.notify.blocks import (
    MAX_BLOCKS,
    MAX_FIELD_TEXT,
    MAX_HEADER_TEXT,
    MAX_SECTION_TEXT,
    as_text,
    clip,
    esc,
    violations,
)
from drillbook.notify.render import RenderOptions, render_result, render_task_failure, task_log_url
from tests.notify.conftest import make_ctx, make_record, make_result

OPTIONS = RenderOptions(
    max_findings=3, airflow_base_url="http://airflow.example:8080", mention="<!subteam^S0ONCALL>"
)
LOG_URL = (
    "http://airflow.example:8080/dags/dr_certificates__web_certs/runs/"
    "scheduled__2026-03-02T03%3A30%3A00%2B00%3A00/tasks/check?try_number=1"
)


def _md(text):
    return {"type": "mrkdwn", "text": text}


def test_fail_report_exact_blocks():
    result = make_result("FAIL", rto=252.0, objectives={"rto_seconds": 900.0})
    report = render_result(result, make_record(result), make_ctx(), options=OPTIONS)
    assert (
        report.main.text == "FAIL: web_certs (certificates) on var/certs/web.pem: CERT_EXPIRED, CERT_EXPIRING"
    )
    assert report.main.blocks == [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": ":red_circle: FAIL: web_certs (certificates)",
                "emoji": True,
            },
        },
        {
            "type": "section",
            "text": _md(
                "<!subteam^S0ONCALL> *FAIL: the drill ran and found a problem.* Drill *web_certs* on "
                "`var/certs/web.pem`: 2 findings, worst severity *critical*."
            ),
        },
        {
            "type": "section",
            "fields": [
                _md("*Verdict*\nFAIL"),
                _md("*Target*\n`var/certs/web.pem`"),
                _md("*RTO*\n4m 12s (objective 15m 00s, met)"),
                _md("*Duration*\n1.8s"),
                _md("*Controls*\nSOC2:CC6.7"),
                _md("*Run*\n`dr_certificates__web_certs` · try 1 · scheduled"),
            ],
        },
        {"type": "divider"},
        {
            "type": "section",
            "text": _md(
                "*`CERT_EXPIRED`* · critical · web.pem\nweb.pem expired 3 days ago\n"
                "_Fix:_ Renew and deploy the certificate now."
            ),
        },
        {
            "type": "section",
            "text": _md(
                "*`CERT_EXPIRING`* · medium · api.pem\napi.pem expires in 12 days\n"
                "_Fix:_ Renew the certificate before the date shown; check that automatic renewal works."
            ),
        },
        {
            "type": "context",
            "elements": [
                _md("Evidence: ledger record #42 · hash `ab12cd34ef56` · `drillbook evidence show 42`")
            ],
        },
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Task log", "emoji": True},
                    "url": LOG_URL,
                    "action_id": "drillbook_link_0",
                },
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Evidence record", "emoji": True},
                    "url": "http://airflow.example:8080/drillbook/record/42",
                    "action_id": "drillbook_link_1",
                },
            ],
        },
    ]
    assert report.thread is not None
    assert report.thread.blocks == [
        {"type": "section", "text": _md("Phases:\n✓ discover: ok, 0.2s (3 files)\n✓ inspect: ok, 1.5s")},
        {"type": "section", "text": _md("`CERT_EXPIRED` detail:\n```not_after = 2026-02-27```")},
        {"type": "context", "elements": [_md("Environment: drillbook 0.1.0, python 3.11.7")]},
    ]
    assert violations(report.main) == [] and violations(report.thread) == []


def test_error_report_exact_blocks_without_ledger_or_airflow():
    result = make_result("ERROR", rto=1200.0, rpo=None, objectives={"rto": 900.0, "rpo": 3600.0})
    ctx = make_ctx(
        dag_id="dr_certificates__web_certs",
        run_id="cli__20260302T033000__abcd1234",
        task_id="cli",
        trigger="manual",
    )
    report = render_result(result, None, ctx, options=RenderOptions(max_findings=3))
    assert report.main.text == "ERROR: web_certs (certificates) on var/certs/web.pem: CERT_UNREADABLE"
    assert report.main.blocks == [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": ":warning: ERROR: web_certs (certificates)",
                "emoji": True,
            },
        },
        {
            "type": "section",
            "text": _md(
                "*ERROR: the drill could not verify (treat it like a failure).* Drill *web_certs* on "
                "`var/certs/web.pem`: 1 finding, worst severity *critical*."
            ),
        },
        {
            "type": "section",
            "fields": [
                _md("*Verdict*\nERROR"),
                _md("*Target*\n`var/certs/web.pem`"),
                _md("*RTO*\n20m 00s (objective 15m 00s, EXCEEDED)"),
                _md("*RPO*\nnot measured (objective 1h 00m)"),
                _md("*Duration*\n1.8s"),
                _md("*Controls*\nSOC2:CC6.7"),
                _md("*Run*\n`dr_certificates__web_certs` · try 1 · manual"),
            ],
        },
        {"type": "divider"},
        {
            "type": "section",
            "text": _md(
                "*`CERT_UNREADABLE`* · critical · broken.pem\nvar/certs/broken.pem is not PEM\n"
                "_Fix:_ Check the path and that the file holds PEM certificates."
            ),
        },
        {
            "type": "context",
            "elements": [_md("Evidence: *not recorded* (no ledger configured for this run)")],
        },
    ]  # no Task log button: a terminal run has no Airflow log


def test_pass_verdict_is_in_words_and_no_mention():
    result = make_result("PASS")
    main = render_result(result, make_record(result), make_ctx(), options=OPTIONS).main
    section_text = main.blocks[1]["text"]["text"]
    assert section_text.startswith("*PASS: verified, every check held.*")
    assert "subteam" not in section_text


def test_sixty_findings_and_a_ten_kilobyte_message_stay_inside_slack_limits():
    big = "x" * 10_000
    findings = [
        finding(
            "CERT_EXPIRING",
            f"cert {i} <expires> & soon " + (big if i == 0 else ""),
            subject=f"c{i}.pem",
            detail={"blob": big, "n": i},
        )
        for i in range(60)
    ]
    result = make_result("PASS", findings=findings)  # medium findings only: verdict PASS
    report = render_result(result, make_record(result), make_ctx(), options=RenderOptions(max_findings=40))
    for message in (report.main, report.thread):
        assert violations(message) == []
        assert len(message.blocks) <= MAX_BLOCKS
    assert len(report.main.blocks) <= MAX_BLOCKS
    contexts = [b for b in report.main.blocks if b["type"] == "context"]
    # 40 shown; the 50-block cap drops some and says so; the 20 beyond max_findings are announced
    assert any("and 20 more findings" in e["text"] for b in contexts for e in b["elements"])
    assert any(
        "more blocks not shown" in e["text"]
        for b in report.thread.blocks
        if b["type"] == "context"
        for e in b["elements"]
    )
    first = next(
        b
        for b in report.main.blocks
        if b["type"] == "section" and "c0.pem" in b.get("text", {}).get("text", "")
    )
    assert len(first["text"]["text"]) < MAX_SECTION_TEXT
    assert "&lt;expires&gt; &amp; soon" in first["text"]["text"]


def test_hostile_drill_name_is_escaped_and_the_header_is_clipped():
    name = "<!channel> & <https://evil.example|click> " + "y" * 300
    result = make_result("FAIL", drill=name, target="db <prod> & co")
    report = render_result(result, make_record(result), make_ctx(), options=OPTIONS)
    assert violations(report.main) == []
    header = report.main.blocks[0]["text"]["text"]
    assert len(header) <= MAX_HEADER_TEXT and header.endswith("…")
    lead = report.main.blocks[1]["text"]["text"]
    assert "<!channel>" not in lead and "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in lead
    assert "<!subteam^S0ONCALL>" in lead  # our own markup is not escaped
    assert "`db &lt;prod&gt; &amp; co`" in report.main.blocks[2]["fields"][1]["text"]
    assert "<!channel>" not in report.main.text
    assert all(len(f["text"]) <= MAX_FIELD_TEXT for f in report.main.blocks[2]["fields"])


def test_clip_never_splits_an_entity_and_respects_the_limit():
    text = esc("a&b" * 50)
    for limit in range(5, 60):
        cut = clip(text, limit)
        assert len(cut) <= limit
        assert not cut.rstrip("…").endswith(("&", "&a", "&am", "&amp"))


def test_log_url_prefers_the_context_and_handles_mapped_tasks():
    assert task_log_url(make_ctx(log_url="http://x/log"), "http://b") == "http://x/log"
    url = task_log_url(make_ctx(map_index=3, try_number=2), "http://b/")
    assert (
        url
        == "http://b/dags/dr_certificates__web_certs/runs/scheduled__2026-03-02T03%3A30%3A00%2B00%3A00/tasks/check/mapped/3?try_number=2"
    )


def test_task_failure_message_redacts_and_escapes():
    msg = render_task_failure(
        dag_id="dr_certificates__web_certs",
        task_id="check",
        run_id="r1",
        try_number=2,
        exception="OperationalError: password=hunter2 <bad>",
        log_url="http://b/log",
        options=RenderOptions(mention="<!here>"),
    )
    assert violations(msg) == []
    text = as_text(msg.blocks)
    assert "hunter2" not in text and "hunter2" not in msg.text
    assert "ERROR: the Airflow task check failed" in text and "Try: 2" in text
    assert "&lt;bad&gt;" in msg.blocks[1]["text"]["text"]


def _button_urls(report):
    return [e["url"] for b in report.main.blocks if b["type"] == "actions" for e in b["elements"]]


def test_evidence_button_links_the_record_page_only_where_there_is_a_ui():
    result = make_result("FAIL")
    # an Airflow run with a record: the task log and the record's evidence page
    report = render_result(result, make_record(result, seq=907), make_ctx(), options=OPTIONS)
    assert _button_urls(report) == [LOG_URL, "http://airflow.example:8080/drillbook/record/907"]
    # no record (no ledger for the run): nothing to link, the task log stays
    report = render_result(result, None, make_ctx(), options=OPTIONS)
    assert _button_urls(report) == [LOG_URL]
    # a terminal run has no Airflow UI to link into: neither button, the CLI command stays in the text
    cli = make_ctx(run_id="cli__20260302T033000__abcd1234", task_id="cli")
    report = render_result(result, make_record(result, seq=907), cli, options=OPTIONS)
    assert _button_urls(report) == []
    assert any("drillbook evidence show 907" in str(b) for b in report.main.blocks)
    # Airflow's own log URL names the UI's real address: the evidence link uses it, not the catalogue default
    airflow_log = (
        "https://airflow.corp.example/ui/dags/dr_certificates__web_certs/runs/r1/tasks/check?try_number=2"
    )
    report = render_result(
        result, make_record(result, seq=907), make_ctx(log_url=airflow_log), options=RenderOptions()
    )
    assert _button_urls(report) == [airflow_log, "https://airflow.corp.example/ui/drillbook/record/907"]
    # a log URL of another shape names no UI address we can trust: no evidence button rather than a guess
    odd = "https://logs.example/view?ti=check"
    report = render_result(result, make_record(result, seq=907), make_ctx(log_url=odd), options=OPTIONS)
    assert _button_urls(report) == [odd]


def test_record_url_is_the_path_the_evidence_pages_serve():
    from drillbook.web import URL_PREFIX, record_url

    assert (
        record_url("http://airflow.example:8080/", 7) == f"http://airflow.example:8080{URL_PREFIX}/record/7"
    )
    assert record_url("https://ops.example/airflow", 12) == "https://ops.example/airflow/drillbook/record/12"
