"""SNS topic -> SQS queue path through moto's server on 127.0.0.1."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from drillbook.drills.alert_path import run_alert_path
from drillbook.drills.alert_path.canary import Canary
from drillbook.drills.alert_path.clients import EnvPathClients
from drillbook.result import Verdict
from tests.alert_path.conftest import closed_port, make_drill

AWS_KEY_ID = "AKIDDRILLBOOKTEST01"
AWS_SECRET = "aws-secret-drillbook-0123456789"


@pytest.fixture
def aws_conn(aws, monkeypatch):
    """aws_default with explicit keys, so the drill must register and hide the secret key itself."""
    conn = {
        "conn_type": "aws",
        "login": AWS_KEY_ID,
        "password": AWS_SECRET,
        "extra": {"endpoint_url": aws, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    return aws


@pytest.fixture
def topic_queue(aws_conn, boto):
    sns, sqs = boto("sns"), boto("sqs")
    topic = sns.create_topic(Name="oncall-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="drillbook-canary")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sns, sqs, topic, queue, arn


def drill_for(topic: str, queue: str, **kw):
    return make_drill({"name": "sns_path", "type": "sns_sqs", "topic_arn": topic, "queue_url": queue}, **kw)


def run(drill):
    [result] = run_alert_path(drill=drill, clients=EnvPathClients())
    return result


def test_delivered_through_the_envelope_passes_and_deletes_the_message(topic_queue, leak_check):
    sns, sqs, topic, queue, arn = topic_queue
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    result = run(drill_for(topic, queue))
    assert result.verdict is Verdict.PASS, result.findings
    d = result.details["delivery"]
    assert d["delivery_mode"] == "envelope" and d["cleanup"] == "deleted"
    assert d["latency_seconds"] < 2 and d["sent_at"] and d["seen_at"] and d["message_id"]
    left = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages")
    assert not left
    leak_check.record([result])
    leak_check.assert_clean(AWS_SECRET)


def test_raw_delivery_is_recognised_and_other_messages_released(topic_queue):
    sns, sqs, topic, queue, arn = topic_queue
    sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, ReturnSubscriptionArn=True)[
        "SubscriptionArn"
    ]
    sns.set_subscription_attributes(
        SubscriptionArn=sub, AttributeName="RawMessageDelivery", AttributeValue="true"
    )
    sqs.send_message(QueueUrl=queue, MessageBody='{"text": "drillbook-canary-0000 from another run"}')
    sqs.send_message(QueueUrl=queue, MessageBody="someone else's message")
    result = run(drill_for(topic, queue))
    assert result.verdict is Verdict.PASS, result.findings
    d = result.details["delivery"]
    assert d["delivery_mode"] == "raw"
    # only our canary was deleted; the other two were released (visibility 0), not swallowed
    left = (
        sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0, MaxNumberOfMessages=10).get("Messages") or []
    )
    assert sorted(m["Body"] for m in left) == sorted(
        ['{"text": "drillbook-canary-0000 from another run"}', "someone else's message"]
    )
    assert d["other_canaries_released"] == 1 and d["foreign_messages_released"] == 1


def test_a_concurrent_runs_canary_is_left_for_it(topic_queue):
    """Another run's canary, still in flight on the same queue, is released at once, never deleted."""
    sns, sqs, topic, queue, arn = topic_queue
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    theirs = Canary.new(drill="alerts_test", path="sns_path")  # same drill and path: only the nonce differs
    sns.publish(TopicArn=topic, Message=theirs.sns_message())
    result = run(drill_for(topic, queue))
    assert result.verdict is Verdict.PASS, result.findings
    left = (
        sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0, MaxNumberOfMessages=10).get("Messages") or []
    )
    assert len(left) == 1 and theirs.nonce in left[0]["Body"], "the concurrent run's canary was taken from it"
    assert result.details["delivery"]["other_canaries_released"] == 1


def test_two_runs_in_flight_on_one_queue_both_pass(topic_queue):
    sns, sqs, topic, queue, arn = topic_queue
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(
                run, [drill_for(topic, queue, name="alerts_a"), drill_for(topic, queue, name="alerts_b")]
            )
        )
    assert [r.verdict for r in results] == [Verdict.PASS, Verdict.PASS], [r.findings for r in results]
    assert [r.details["delivery"]["cleanup"] for r in results] == ["deleted", "deleted"]
    assert not sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages")


def test_a_shared_queue_is_received_a_bounded_number_of_times(topic_queue):
    """Each receive raises a message's ReceiveCount (towards a DLQ): already-released messages are not re-asked every 0.2 s."""
    _sns, sqs, topic, queue, _arn = topic_queue
    sqs.send_message(QueueUrl=queue, MessageBody="someone else's message")
    result = run(
        drill_for(topic, queue, delivery="4s", give_up="4s")
    )  # not subscribed: our canary never comes
    assert result.codes() == ["ALERT_NOT_DELIVERED"]
    [left] = sqs.receive_message(
        QueueUrl=queue, WaitTimeSeconds=0, AttributeNames=["ApproximateReceiveCount"]
    )["Messages"]
    assert left["Body"] == "someone else's message"
    received = int(left["Attributes"]["ApproximateReceiveCount"]) - 1  # minus this test's own receive
    assert 1 <= received <= 8, f"the drill received a foreign message {received} times in 4 s"
    assert result.details["delivery"]["releases"] == received


def test_queue_not_subscribed_is_not_delivered(topic_queue, leak_check):
    _sns, _sqs, topic, queue, _arn = topic_queue
    result = run(drill_for(topic, queue, give_up="2s"))
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_NOT_DELIVERED"]
    f = result.findings[0]
    assert f.detail["queue_subscribed"] is False
    assert "not subscribed" in f.message
    leak_check.record([result])
    leak_check.assert_clean(AWS_SECRET)


def test_topic_missing_is_rejected(topic_queue, leak_check):
    _sns, _sqs, topic, queue, _arn = topic_queue
    result = run(drill_for(topic.replace("oncall-alerts", "no-such-topic"), queue))
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_REJECTED"]
    assert result.findings[0].detail["aws_error"] == "NotFound"
    leak_check.record([result])
    leak_check.assert_clean(AWS_SECRET)


def test_queue_missing_could_not_verify(topic_queue):
    sns, _sqs, topic, queue, arn = topic_queue
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    result = run(drill_for(topic, queue.replace("drillbook-canary", "no-such-queue")))
    assert result.verdict is Verdict.ERROR
    assert result.codes() == ["ALERT_READBACK_FAILED"]


def test_unreachable_endpoint_is_error(monkeypatch):
    conn = {
        "conn_type": "aws",
        "extra": {"endpoint_url": f"http://127.0.0.1:{closed_port()}", "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    result = run(drill_for("arn:aws:sns:us-east-1:123456789012:t", "http://127.0.0.1:1/q"))
    assert result.verdict is Verdict.ERROR
    assert result.codes() == ["ALERT_PATH_UNREACHABLE"]


def test_no_connection_and_no_credentials_is_connection_missing(monkeypatch, tmp_path):
    for var in ("AIRFLOW_CONN_AWS_DEFAULT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask 169.254.169.254 from a test
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    result = run(drill_for("arn:aws:sns:us-east-1:123456789012:t", "http://127.0.0.1:1/q"))
    assert result.verdict is Verdict.ERROR
    assert result.codes() == ["CONNECTION_MISSING"]
