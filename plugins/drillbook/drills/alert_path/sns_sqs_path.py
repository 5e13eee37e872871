"""Prove an SNS topic → SQS queue path: publish the canary, long-poll the queue for it, delete it.

Rules this module enforces:
- delivered means the canary's nonce was received from the queue (inside the
  SNS envelope or as a raw message), not that Publish returned a MessageId;
- only the message carrying *this run's* nonce is deleted. Every other
  message — another run's canary still in flight on the same queue, or
  anything else — is made visible again at once (ChangeMessageVisibility 0),
  never held and never deleted, so a concurrent run still finds its canary;
- each receive raises the ApproximateReceiveCount of the messages it returns
  (towards a dead-letter queue's maxReceiveCount), so when a receive brings
  back only messages we have already released, the next receive waits longer
  (doubling, capped at a quarter of the objective and at ``MAX_PAUSE``): a
  shared queue is touched a bounded handful of times per run, not every 0.2 s;
- Publish refused (topic missing, access denied, bad credentials) is
  ``ALERT_REJECTED``; no answer is ``ALERT_PATH_UNREACHABLE``; a queue that
  cannot be read is ``ALERT_READBACK_FAILED``; a canary never received is
  ``ALERT_NOT_DELIVERED``, with a subscription check in the detail.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from drillbook.drills.alert_path.canary import ASCII_LABEL, MARKER, Canary
from drillbook.drills.alert_path.catalogue import SnsSqsPath
from drillbook.drills.alert_path.delivery import Delivery, judge
from drillbook.drills.base import ResultBuilder
from drillbook.errors import DrillAborted

log = logging.getLogger(__name__)

MAX_LONG_POLL = 20  # seconds: SQS's own ceiling for WaitTimeSeconds
MAX_PAUSE = 5.0  # seconds: longest wait between receives that returned only already-released messages


def _aws_error(exc: Exception) -> tuple[str, int | None]:
    response = getattr(exc, "response", None) or {}
    code = str((response.get("Error") or {}).get("Code") or type(exc).__name__)
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code, status


def _unpack(body: str) -> tuple[str, str]:
    """(delivery mode, message text) of an SQS body: an SNS envelope or a raw message."""
    try:
        data = json.loads(body)
    except ValueError:
        return "raw", body
    if isinstance(data, dict) and data.get("Type") == "Notification" and "Message" in data:
        return "envelope", str(data["Message"])
    return "raw", body


def _publish(
    builder: ResultBuilder, sns: Any, *, path: SnsSqsPath, canary: Canary, delivery: Delivery
) -> None:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    with builder.phase("send") as ph:
        delivery.mark_sent()
        delivery.attempts = 1  # botocore retries transient errors itself (standard retry mode)
        try:
            response = sns.publish(
                TopicArn=path.topic_arn,
                Message=canary.sns_message(),
                Subject=ASCII_LABEL,
                MessageAttributes={"drillbook_nonce": {"DataType": "String", "StringValue": canary.nonce}},
            )
        except ClientError as exc:
            code, status = _aws_error(exc)
            delivery.http_status = status
            builder.checked()
            builder.find(
                "ALERT_REJECTED",
                f"SNS refused the test alert for topic {path.topic_arn!r}: {code} (HTTP {status})",
                subject=path.name,
                detail={"aws_error": code, "http_status": status, "topic_arn": path.topic_arn},
            )
            ph.status, ph.detail = "failed", f"rejected: {code}"
            raise DrillAborted("send") from None
        except NoCredentialsError:
            builder.find(
                "CONNECTION_MISSING",
                f"no AWS credentials for connection {path.connection!r}",
                subject=path.name,
            )
            ph.status, ph.detail = "failed", "no credentials"
            raise DrillAborted("send") from None
        except BotoCoreError as exc:
            builder.find(
                "ALERT_PATH_UNREACHABLE",
                f"SNS could not be reached to publish to {path.topic_arn!r}: {type(exc).__name__}",
                subject=path.name,
                detail={"error": type(exc).__name__, "topic_arn": path.topic_arn},
            )
            ph.status, ph.detail = "failed", "unreachable"
            raise DrillAborted("send") from None
        delivery.http_status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode", 200)
        delivery.extra["message_id"] = response.get("MessageId")
        ph.detail = f"published to {path.topic_arn} (MessageId {response.get('MessageId')})"


def _receive(
    builder: ResultBuilder, sqs: Any, *, path: SnsSqsPath, canary: Canary, delivery: Delivery
) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    found: dict[str, Any] = {"pause": 0.0, "releases": 0, "duplicates": 0}
    released: dict[str, bool] = {}  # MessageId -> is a drillbook canary (another run's): never ours to delete
    max_pause = max(0.5, min(MAX_PAUSE, delivery.objective / 4))  # bounds the latency a pause can add

    def release(handle: str) -> None:
        # visible again at once: another run (or consumer) must not wait for our give_up to see it
        sqs.change_message_visibility(QueueUrl=path.queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
        found["releases"] += 1

    def look(_remaining: float) -> bool:
        if found["pause"]:
            time.sleep(min(found["pause"], max(0.0, delivery.remaining())))
        wait = max(0, min(MAX_LONG_POLL, int(delivery.remaining())))
        response = sqs.receive_message(
            QueueUrl=path.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait,
            MessageAttributeNames=["All"],
            AttributeNames=["SentTimestamp"],
        )
        hit, fresh = False, False
        for message in response.get("Messages") or []:
            mode, text = _unpack(message.get("Body") or "")
            handle = message["ReceiptHandle"]
            if canary.found_in(text):
                if "handle" in found:  # SNS delivers at least once: a duplicate of ours is ours to delete too
                    sqs.delete_message(QueueUrl=path.queue_url, ReceiptHandle=handle)
                    found["duplicates"] += 1
                    continue
                found["handle"], found["mode"] = handle, mode
                hit = True
                continue
            message_id = str(message.get("MessageId") or handle)
            fresh = fresh or message_id not in released
            released[message_id] = MARKER in text
            release(handle)
        # only already-released messages came back: wait longer before asking again (each receive counts)
        found["pause"] = 0.0 if (hit or fresh) else min(max_pause, max(0.5, 2 * found["pause"]))
        return hit

    with builder.phase("read back") as ph:
        try:
            delivery.poll(look, interval=0.2)  # long polling waits on the server; a short pause is enough
        except (ClientError, BotoCoreError) as exc:
            code = _aws_error(exc)[0] if isinstance(exc, ClientError) else type(exc).__name__
            builder.find(
                "ALERT_READBACK_FAILED",
                f"published to {path.topic_arn!r} but queue {path.queue_url!r} cannot be read: {code}",
                subject=path.name,
                detail={"aws_error": code, "queue_url": path.queue_url},
            )
            ph.status, ph.detail = "failed", f"queue unreadable: {code}"
            raise DrillAborted("read back") from None
        others = sum(released.values())
        delivery.extra.update(
            delivery_mode=found.get("mode"),
            other_canaries_released=others,
            foreign_messages_released=len(released) - others,
            releases=found["releases"],
            duplicates_deleted=found["duplicates"],
        )
        ph.detail = (
            f"received after {delivery.latency_seconds:.2f}s ({found.get('mode')})"
            if delivery.seen
            else f"not received after {delivery.polls} receives"
        )

    with builder.phase("cleanup") as ph:
        if "handle" not in found:
            ph.skip("nothing received")
            return
        try:
            sqs.delete_message(QueueUrl=path.queue_url, ReceiptHandle=found["handle"])
            delivery.cleanup = "deleted"
            ph.detail = "deleted from the queue"
        except (ClientError, BotoCoreError) as exc:
            code = _aws_error(exc)[0] if isinstance(exc, ClientError) else type(exc).__name__
            delivery.cleanup = f"failed: {code}"
            ph.status, ph.detail = "failed", delivery.cleanup
            builder.find(
                "ALERT_CLEANUP_FAILED",
                f"could not delete the canary from {path.queue_url!r}: {code}",
                subject=path.name,
                detail={"aws_error": code},
            )


def subscription_state(sns: Any, sqs: Any, *, path: SnsSqsPath) -> dict[str, Any]:
    """Best-effort diagnosis for a lost canary: is the queue subscribed to the topic at all?"""
    try:
        arn = sqs.get_queue_attributes(QueueUrl=path.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        subscribed = False
        raw = None
        kwargs: dict[str, Any] = {"TopicArn": path.topic_arn}
        for _ in range(50):  # 100 subscriptions a page; bounded
            page = sns.list_subscriptions_by_topic(**kwargs)
            for sub in page.get("Subscriptions") or []:
                if sub.get("Endpoint") == arn and sub.get("Protocol") == "sqs":
                    subscribed = True
                    raw = sub.get("SubscriptionArn")
            if subscribed or not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        return {"queue_subscribed": subscribed, "subscription_arn": raw}
    except Exception as exc:  # a diagnosis must never hide the finding itself
        return {"subscription_check": f"failed: {_aws_error(exc)[0]}"}


def prove_sns_sqs(
    builder: ResultBuilder, sns: Any, sqs: Any, *, path: SnsSqsPath, canary: Canary, delivery: Delivery
) -> None:
    """Publish, receive and delete one SNS→SQS canary; findings land on ``builder``."""
    _publish(builder, sns, path=path, canary=canary, delivery=delivery)
    _receive(builder, sqs, path=path, canary=canary, delivery=delivery)
    detail, reason = None, ""
    if not delivery.seen:
        detail = subscription_state(sns, sqs, path=path)
        delivery.extra.update(detail)
        if detail.get("queue_subscribed") is False:
            reason = f"queue {path.queue_url!r} is not subscribed to the topic"
    judge(builder, delivery, not_seen_detail=detail, not_seen_reason=reason)
