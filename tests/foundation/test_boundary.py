"""Foreign errors become drillbook's at the boundary: one real foreign failure per mapping, message redacted."""

from __future__ import annotations

import socket

import pytest

from drillbook.errors import (
    ConfigurationError,
    DrillbookError,
    NotificationFailed,
    ResourceError,
    ResourceUnavailable,
)
from drillbook.resources.boundary import AWS, OS, POSTGRES, SLACK, YAML, map_exceptions
from drillbook.safety.redact import forget_secrets, register_secret

SECRET = "b0undary-s3cret-value"


def dead_port() -> int:
    with socket.socket() as s:  # bound and closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _secret():
    register_secret(SECRET)
    yield
    forget_secrets()


def test_psycopg_refused_is_resource_unavailable_without_the_password():
    import psycopg

    with pytest.raises(ResourceUnavailable) as err, map_exceptions(POSTGRES, what="ledger 'x'"):
        psycopg.connect(f"postgresql://u:{SECRET}@127.0.0.1:{dead_port()}/db", connect_timeout=3)
    assert str(err.value).startswith("ledger 'x': OperationalError: ")
    assert SECRET not in str(err.value)
    assert isinstance(err.value.__cause__, psycopg.OperationalError)


def test_a_malformed_postgres_option_is_a_configuration_error():
    from psycopg.conninfo import make_conninfo

    with (
        pytest.raises(ConfigurationError, match=r"^postgres connection 'p': ProgrammingError: "),
        map_exceptions(POSTGRES, what="postgres connection 'p'"),
    ):
        make_conninfo("", host="h", no_such_option="1")


def test_botocore_dead_endpoint_is_resource_unavailable():
    import boto3
    from botocore.config import Config

    client = boto3.session.Session().client(
        "s3",
        region_name="eu-west-1",
        endpoint_url=f"http://127.0.0.1:{dead_port()}",
        aws_access_key_id="AKIAX",
        aws_secret_access_key=SECRET,
        config=Config(connect_timeout=2, retries={"max_attempts": 1}),
    )
    with (
        pytest.raises(ResourceUnavailable, match=r"^s3 'b': EndpointConnectionError: "),
        map_exceptions(AWS, what="s3 'b'"),
    ):
        client.list_objects_v2(Bucket="b")


def test_botocore_without_a_region_is_a_configuration_error(monkeypatch):
    import boto3

    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ConfigurationError, match="NoRegionError"), map_exceptions(AWS, what="acm"):
        boto3.session.Session().client("acm")


def test_a_resolver_aws_client_maps_the_same_way(monkeypatch):
    from drillbook.resources.aws import AwsClientFactory

    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ConfigurationError, match=r"^AWS connection 'aws_q': the acm client: NoRegionError"):
        AwsClientFactory(conn_id="aws_q").client("acm")


def test_slack_sdk_unreachable_is_notification_failed_without_the_token():
    from slack_sdk import WebClient

    client = WebClient(
        token=f"xoxb-{SECRET}", base_url=f"http://127.0.0.1:{dead_port()}/api/", timeout=2, retry_handlers=[]
    )
    with pytest.raises(NotificationFailed) as err, map_exceptions(SLACK, OS, what="slack 'drillbook_slack'"):
        client.auth_test()
    assert SECRET not in str(err.value)


def test_slack_api_refusal_is_notification_failed():
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web import SlackResponse

    response = SlackResponse(
        client=None,
        http_verb="POST",
        api_url="http://x/api/chat.postMessage",
        req_args={},
        data={"ok": False, "error": "invalid_auth"},
        headers={},
        status_code=200,
    )
    with pytest.raises(NotificationFailed, match="SlackApiError"), map_exceptions(SLACK, what="slack"):
        raise SlackApiError("invalid_auth", response)


def test_yaml_error_is_a_configuration_error():
    import yaml

    with (
        pytest.raises(ConfigurationError, match=r"^settings.yaml: (Scanner|Parser)Error"),
        map_exceptions(YAML, what="settings.yaml"),
    ):
        yaml.safe_load("a: [1, 2\nb: }")


def test_os_errors_map_by_kind(tmp_path):
    with pytest.raises(ConfigurationError, match="FileNotFoundError"), map_exceptions(OS, what="backup"):
        (tmp_path / "missing.dump").open()
    with (
        pytest.raises(ResourceUnavailable, match="ConnectionRefusedError"),
        map_exceptions(OS, what="webhook"),
    ):
        socket.create_connection(("127.0.0.1", dead_port()), timeout=2)
    with pytest.raises(ResourceError, match="IsADirectoryError"), map_exceptions(OS, what="spool"):
        tmp_path.open("rb")  # type: ignore[attr-defined]


def test_unmapped_and_own_errors_and_stop_signals_pass_through():
    with pytest.raises(KeyError), map_exceptions(POSTGRES, AWS, SLACK, YAML, OS, what="x"):
        raise KeyError("not foreign I/O")
    with pytest.raises(ConfigurationError, match=r"^ours$"), map_exceptions(OS, what="x"):
        raise ConfigurationError("ours")
    with pytest.raises(KeyboardInterrupt), map_exceptions(OS, what="x"):
        raise KeyboardInterrupt
    assert issubclass(ResourceUnavailable, ResourceError) and issubclass(ResourceError, DrillbookError)
