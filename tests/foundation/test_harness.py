"""The harness itself: real PostgreSQL, moto and the Slack emulator answer on loopback."""

from __future__ import annotations


def test_postgres_answers(pg):
    assert pg.execute("postgres", "select 1") == [(1,)]


def test_moto_serves_s3(boto):
    s3 = boto("s3")
    s3.create_bucket(Bucket="harness")
    s3.put_object(Bucket="harness", Key="k", Body=b"x")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="harness")["Contents"]] == ["k"]


def test_slack_emulator_checks_tokens(slack):
    import pytest
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    ok = WebClient(token=slack.token, base_url=slack.base_url)
    assert ok.chat_postMessage(channel="#dr-oncall", text="hello")["ok"]
    assert [m.text for m in slack.posted("#dr-oncall")] == ["hello"]
    with pytest.raises(SlackApiError) as err:
        WebClient(token="xoxb-wrong", base_url=slack.base_url).auth_test()
    assert err.value.response["error"] == "invalid_auth"
