"""The digest scorecard: exact blocks, counting rules, limits, and a real run against ledger and emulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drillbook.ledger.checkpoint import CheckpointSettings
from drillbook.ledger.records import VerifyReport
from drillbook.ledger.store import Ledger
from drillbook.notify import Notifier, SlackSender
from drillbook.notify.blocks import MAX_BLOCKS, violations
from drillbook.notify.render_digest import render_digest
from drillbook.notify.slack import SlackConnection
from drillbook.reporting.digest import digest_period, run_digest
from drillbook.reporting.scoring import build_scorecard, expected_runs
from drillbook.settings import load_settings  # the test is the entry point: its settings passed down
from tests.notify.conftest import T0, make_ctx, make_record, make_result

START = T0.replace(hour=0, minute=0)
END = START + timedelta(days=1)


def _md(text):
    return {"type": "mrkdwn", "text": text}


def day_of_records():
    records = []
    for i, (verdict, rto) in enumerate([("PASS", 200.0), ("FAIL", 1300.0), ("PASS", 300.0)]):
        result = make_result(
            verdict,
            drill="api_certs",
            started=START + timedelta(hours=i + 1),
            rto=rto,
            objectives={"rto_seconds": 900.0},
        )
        records.append(
            make_record(
                result, seq=i + 1, ctx=make_ctx(dag_id="dr_certificates__api_certs", run_id=f"run{i}")
            )
        )
    error = make_result("ERROR", drill="loud_certs", started=START + timedelta(hours=6))
    records.append(make_record(error, seq=9, ctx=make_ctx(dag_id="dr_certificates__loud_certs", run_id="x")))
    outside = make_result("FAIL", drill="web_certs", started=END + timedelta(minutes=1))
    records.append(make_record(outside, seq=10))  # after the period: not counted
    return records


def test_digest_exact_blocks(catalogue):
    card = build_scorecard(
        catalogue,
        day_of_records(),
        start=START,
        end=END,
        verify=VerifyReport(ok=True, checked=4, head_hash="f" * 64),
        title="daily scorecard",
    )
    message = render_digest(card)
    # api_certs ran 3 of 24 hourly occurrences and one run failed: EXCEPTIONS, never "VERIFIED · 3/24 runs"
    assert message.text == (
        "drillbook daily scorecard 2026-03-02 00:00 → 2026-03-03 00:00 UTC: 0 verified, 1 with exceptions, "
        "1 at risk, 2 not run; ledger verified: 4 records, chain intact (head ffffffffffff)"
    )
    assert message.blocks == [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": ":bar_chart: drillbook daily scorecard", "emoji": True},
        },
        {
            "type": "section",
            "text": _md(
                "*Period:* 2026-03-02 00:00 → 2026-03-03 00:00 UTC\n*4 drills*: 0 verified, 1 with exceptions, "
                "1 at risk, 2 not run.\n"
                ":white_check_mark: ledger verified: 4 records, chain intact (head ffffffffffff)"
            ),
        },
        {"type": "divider"},
        {
            "type": "section",
            "text": _md(
                "*By control*\n"
                ":large_orange_circle: *ISO27001:A.8.24*: EXCEPTIONS · 3/24 runs, 2 passed (21 missed, 1 FAIL/ERROR) "
                "· api_certs\n"
                ":large_orange_circle: *SOC2:CC6.7*: EXCEPTIONS · 3/25 runs, 2 passed (22 missed, 1 FAIL/ERROR) "
                "· web_certs, api_certs"
            ),
        },
        {"type": "divider"},
        {
            "type": "section",
            "text": _md(
                "*By drill*\n"
                ":red_circle: *loud_certs* (certificates): AT RISK · 1/1 runs (1 FAIL/ERROR) · pass rate 0% · open: CERT_UNREADABLE\n"
                ":large_orange_circle: *api_certs* (certificates): EXCEPTIONS · 3/24 runs (21 missed, 1 FAIL/ERROR) · pass rate 67% · "
                "RTO worst 21m 40s / median 5m 00s vs 15m 00s\n"
                ":warning: *web_certs* (certificates): NOT RUN · 0/1 runs (1 missed) · pass rate n/a\n"
                ":warning: *quiet_certs* (certificates): NOT RUN · 0/1 runs (1 missed) · pass rate n/a"
            ),
        },
        {
            "type": "context",
            "elements": [
                _md(
                    "Full history: `drillbook evidence list --since 2026-03-02` · verify: `drillbook evidence verify`"
                )
            ],
        },
    ]


def test_a_broken_ledger_is_the_first_thing_the_digest_says(catalogue):
    card = build_scorecard(
        catalogue,
        [],
        start=START,
        end=END,
        verify=VerifyReport(ok=False, checked=7, first_bad_seq=5, reason="edited", message="hash mismatch"),
    )
    message = render_digest(card)
    assert "*LEDGER DOES NOT VERIFY: record seq 5 edited: hash mismatch*" in message.blocks[1]["text"]["text"]
    assert ":rotating_light:" in message.blocks[1]["text"]["text"]


def test_a_mapped_run_with_one_bad_target_is_not_a_pass(catalogue):
    ctx = make_ctx(dag_id="dr_certificates__api_certs", run_id="r1")
    records = [
        make_record(
            make_result("PASS", drill="api_certs", started=START + timedelta(hours=1)), seq=1, ctx=ctx
        ),
        make_record(
            make_result("FAIL", drill="api_certs", started=START + timedelta(hours=1)),
            seq=2,
            ctx=make_ctx(dag_id=ctx.dag_id, run_id="r1", map_index=1),
        ),
    ]
    score = next(
        d
        for d in build_scorecard(catalogue, records, start=START, end=END, verify=None).drills
        if d.drill == "api_certs"
    )
    assert (score.runs, score.passes, score.newest_verdict) == (1, 0, "FAIL")


def test_expected_runs_and_periods_follow_the_schedule():
    assert expected_runs("@hourly", start=START, end=END) == 24
    assert expected_runs("0 9 * * 1-5", start=START, end=START + timedelta(days=7)) == 5
    assert expected_runs("30 3 * * *", start=START, end=END, timezone="Europe/Berlin") == 1
    assert digest_period("@daily", end=END) == (START, END)
    assert digest_period("@weekly", end=datetime(2026, 3, 8, tzinfo=UTC)) == (
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 3, 8, tzinfo=UTC),
    )


def test_a_huge_catalogue_stays_inside_the_limits(catalogue):
    big = catalogue.model_copy(
        update={
            "drills": [
                d.model_copy(
                    update={"name": f"drill_{i:03d}", "controls": [f"SOC2:CC{i}.{j}" for j in range(5)]}
                )
                for i in range(1000)
                for d in catalogue.drills[:1]
            ]
        }
    )
    message = render_digest(build_scorecard(big, [], start=START, end=END, verify=None))
    assert violations(message) == [] and len(message.blocks) <= MAX_BLOCKS
    assert "run `drillbook evidence list` for the rest" in message.blocks[-1]["elements"][0]["text"]


def test_run_digest_records_then_posts_to_the_digest_channel(slack, catalogue, ledger_dsn):
    ledger = Ledger(ledger_dsn)
    now = datetime.now(UTC)
    ledger.record(
        make_result("PASS", drill="web_certs", started=now - timedelta(seconds=3)), make_ctx(run_id="r1")
    )
    notifier = Notifier(
        catalogue=catalogue,
        sender=SlackSender(connection=SlackConnection(token=slack.token, base_url=slack.base_url)),
    )
    ctx = make_ctx(dag_id="dr_digest__daily", run_id="scheduled__d1", task_id="digest")
    card = run_digest(
        catalogue,
        ledger=ledger,
        notifier=notifier,
        ctx=ctx,
        schedule="@daily",
        now=now + timedelta(seconds=1),
        checkpoints=CheckpointSettings.from_settings(load_settings()),
    )
    web = next(d for d in card.drills if d.drill == "web_certs")
    assert (web.runs, web.passes, web.status) == (1, 1, "VERIFIED")
    posted = slack.posted("#dr-digest")
    assert len(posted) == 1 and posted[0].text.startswith("drillbook daily scorecard")
    row = ledger.query(record_type="digest")[0]
    assert (
        row.drill == "daily"
        and row.result["details"]["scorecard"]["drills"]["web_certs"]["status"] == "VERIFIED"
    )
    assert card.ledger_ok is True


def test_cli_watchdog_and_digest(catalogue_file, ledger_dsn, tmp_path, monkeypatch, capsys):
    import argparse

    from drillbook.cli.watchdog import configure_digest_parser, configure_watchdog_parser

    monkeypatch.delenv("AIRFLOW_CONN_DRILLBOOK_SLACK", raising=False)
    monkeypatch.setenv("DRILLBOOK_OUTBOX", str(tmp_path / "outbox.jsonl"))
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    configure_watchdog_parser(sub.add_parser("watchdog"))
    configure_digest_parser(sub.add_parser("digest"))
    common = ["--ledger-dsn", ledger_dsn, "--catalogue", str(catalogue_file)]
    args = parser.parse_args(["watchdog", *common])
    assert args.func(args) == 0  # their first appearance: nothing was due yet, nobody is paged
    assert "DRILL_MISSED" not in capsys.readouterr().out
    later = (datetime.now(UTC) + timedelta(days=10)).isoformat()
    args = parser.parse_args(["watchdog", *common, "--now", later])
    assert args.func(args) == 1  # ten days on, nothing has run: every drill is missed
    assert capsys.readouterr().out.count("DRILL_MISSED") == 4
    args = parser.parse_args(["digest", *common, "--schedule", "@weekly"])
    assert args.func(args) == 0
    assert "drillbook weekly scorecard" in capsys.readouterr().out
    with Ledger(ledger_dsn) as ledger:
        # the incidents went to the outbox only: one notification row says nobody was told (defect 5)
        assert sorted({r.record_type for r in ledger.query()}) == ["digest", "notification", "watchdog"]


def test_one_run_of_many_expected_is_exceptions_not_verified(catalogue):
    """The digest used to print `VERIFIED · 1/19 runs`: missed runs are exceptions (drillbook.evidence.controls)."""
    ctx = make_ctx(dag_id="dr_certificates__api_certs", run_id="r1")
    record = make_record(
        make_result("PASS", drill="api_certs", started=START + timedelta(hours=1)), seq=1, ctx=ctx
    )
    card = build_scorecard(
        catalogue, [record], start=START, end=END, verify=VerifyReport(ok=True, checked=1, head_hash="f" * 64)
    )
    score = next(d for d in card.drills if d.drill == "api_certs")
    assert (score.runs, score.expected, score.missed, score.status) == (1, 24, 23, "EXCEPTIONS")
    control = next(c for c in card.controls if c.control == "ISO27001:A.8.24")
    assert (control.status, control.missed) == ("EXCEPTIONS", 23)
    text = render_digest(card).text
    assert "1 verified" not in text and "1 with exceptions" in text
