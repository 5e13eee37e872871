"""The digest signs the head, posts the full hash to Slack, and compares it with the head it posted last time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drillbook.catalogue import load_catalogue
from drillbook.ledger.checkpoint import CheckpointSettings
from drillbook.ledger.store import Ledger
from drillbook.notify import Notifier, SlackSender
from drillbook.notify.slack import SlackConnection
from drillbook.reporting.digest import run_digest
from tests.ledger.conftest import tamper
from tests.notify.conftest import CATALOGUE, make_ctx, make_result


@pytest.fixture
def setup(slack, ledger_dsn, tmp_path):
    path = tmp_path / "drills.yaml"
    path.write_text(yaml.safe_dump(CATALOGUE, sort_keys=False))
    catalogue = load_catalogue(path)
    notifier = Notifier(
        catalogue=catalogue,
        sender=SlackSender(connection=SlackConnection(token=slack.token, base_url=slack.base_url)),
    )
    ledger = Ledger(ledger_dsn)
    now = datetime.now(UTC)
    ledger.record(
        make_result("PASS", drill="web_certs", started=now - timedelta(seconds=3)), make_ctx(run_id="r1")
    )
    return catalogue, notifier, ledger


def _digest(setup, run: str, settings: CheckpointSettings):
    catalogue, notifier, ledger = setup
    ctx = make_ctx(dag_id="dr_digest__daily", run_id=run, task_id="digest")
    return run_digest(
        catalogue,
        ledger=ledger,
        notifier=notifier,
        ctx=ctx,
        schedule="@daily",
        now=datetime.now(UTC) + timedelta(seconds=1),
        checkpoints=settings,
    )


def test_the_digest_posts_the_signed_full_head_and_checks_the_previous_one(
    setup, slack, ledger_dsn, tmp_path
):
    settings = CheckpointSettings(
        private_key=Ed25519PrivateKey.generate().private_bytes_raw().hex(),
        path=str(tmp_path / "checkpoints.jsonl"),
    )
    ledger = setup[2]
    first = _digest(setup, "d1", settings)
    head = ledger.head()
    assert head.record_type == "digest"  # the checkpoint covers the digest's own row
    text = slack.posted("#dr-digest")[-1].text + str(slack.posted("#dr-digest")[-1].blocks)
    assert f"head seq={head.seq} {head.hash}" in text and "signed by key" in text
    assert "no earlier digest head to compare with" in first.ledger_summary
    assert (tmp_path / "checkpoints.jsonl").read_text().count(head.hash) == 1
    ledger.record(make_result("PASS", drill="web_certs"), make_ctx(run_id="r2"))
    second = _digest(setup, "d2", settings)
    assert (
        f"previous digest head seq={head.seq} {head.hash[:12]}… still in the chain" in second.ledger_summary
    )
    assert second.ledger_ok is True
    # someone cuts the tail (the last digest's row included) and the checkpoints from the database
    newest = ledger.head()
    tamper(
        ledger_dsn,
        f"DELETE FROM drillbook_evidence WHERE seq >= {newest.seq - 1}",
        "DELETE FROM drillbook_checkpoint",
    )
    third = _digest(setup, "d3", settings)
    assert third.ledger_ok is False
    assert "LEDGER DOES NOT VERIFY" in third.ledger_summary and "truncated" in third.ledger_summary
    # the outside copy still holds the head the last digest posted, so the post names it as gone
    assert f"PREVIOUS DIGEST HEAD seq={newest.seq} {newest.hash} IS NOT IN THE CHAIN" in third.ledger_summary


def test_without_a_key_the_digest_says_unsigned(setup, slack):
    card = _digest(setup, "d1", CheckpointSettings())
    assert "UNSIGNED: no checkpoint key configured" in card.ledger_summary
    row = setup[2].query(record_type="digest")[0]
    assert "CHECKPOINT_UNSIGNED" in row.codes
    assert "UNSIGNED" in slack.posted("#dr-digest")[-1].text + str(slack.posted("#dr-digest")[-1].blocks)
