"""One resolver, two backends: every extra drillbook honours means the same from the CLI and under Airflow.

Each case sets a connection once, as ``AIRFLOW_CONN_<ID>`` (URI or JSON). The CLI's backend
(``EnvConnections``) reads it with drillbook's parser; the Airflow backend (``AirflowConnections``)
gets it from Airflow's own ``BaseHook.get_connection`` (its environment secrets backend and its
Connection model). The typed resources built from the two must be equal.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drillbook.errors import ConfigurationError, ConnectionNotConfigured, NotificationFailed
from drillbook.resources.aws import AwsClientFactory
from drillbook.resources.resolver import EnvConnections, Resolver
from drillbook.settings import load_settings

pytestmark = pytest.mark.airflow
REPO = Path(__file__).resolve().parents[2]

SETTINGS = load_settings(
    {"DRILLBOOK_SPOOL": "/tmp/drillbook-resolver-spool.jsonl", "DRILLBOOK_OUTBOX": "/tmp/o.jsonl"}
)


@pytest.fixture
def both(airflow_db, monkeypatch):
    from drillbook.airflow.resources import AirflowConnections

    def make() -> tuple[Resolver, Resolver]:
        return (
            Resolver(EnvConnections(), settings=SETTINGS),
            Resolver(AirflowConnections(), settings=SETTINGS),
        )

    return make


def conn_env(monkeypatch, conn_id: str, value: dict | str) -> None:
    monkeypatch.delenv(f"DRILLBOOK_CONN_{conn_id.upper()}", raising=False)
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", value if isinstance(value, str) else json.dumps(value)
    )


# -- postgres: every extra honoured, URI and JSON ---------------------------------------------------
POSTGRES = {
    "uri": "postgresql://drill%40er:p%40ss@db.example:6543/shop",
    "sslmode": "postgresql://u:pw@db.example:5432/shop?sslmode=verify-full",
    "sslrootcert": "postgresql://u:pw@db.example/shop?sslrootcert=%2Fetc%2Fca.pem",
    "connect_timeout": "postgresql://u:pw@db.example/shop?connect_timeout=7",
    "application_name": "postgresql://u:pw@db.example/shop?application_name=drill-x",
    "json dbname extra": {
        "conn_type": "postgres",
        "host": "db.example",
        "login": "u",
        "password": "pw",
        "port": 5433,
        "extra": {"dbname": "ledger", "sslmode": "require"},
    },
    "no database": {"conn_type": "postgres", "host": "db.example", "login": "u", "password": "pw"},
}


@pytest.mark.parametrize("case", sorted(POSTGRES))
def test_postgres_dsn_is_the_same_on_both_paths(both, monkeypatch, case):
    conn_env(monkeypatch, "db_x", POSTGRES[case])
    cli, airflow = both()
    assert cli.postgres_dsn("db_x") == airflow.postgres_dsn("db_x")
    dsn = cli.postgres_dsn("db_x")
    for needle in {
        "sslmode": "sslmode=verify-full",
        "sslrootcert": "sslrootcert=/etc/ca.pem",
        "connect_timeout": "connect_timeout=7",
        "application_name": "application_name=drill-x",
        "json dbname extra": "dbname=ledger",
        "no database": "dbname=postgres",
    }.get(case, "").split():
        assert needle in dsn, dsn  # the extra was honoured, not just equally dropped
    ledgers = cli.ledger("db_x"), airflow.ledger("db_x")
    assert (
        ledgers[0]._dsn == ledgers[1]._dsn
        and ledgers[0].spool.path == ledgers[1].spool.path == SETTINGS.spool_file
    )


# -- slack: the connection and its retry policy ----------------------------------------------------
SLACK = {
    "base_url": {"base_url": "http://127.0.0.1:9/api"},
    "timeout": {"timeout": 4},
    "proxy": {"proxy": "http://127.0.0.1:3128"},
    "max_retry_after": {"max_retry_after": 5},
    "channel": {"channel": "#dr-oncall"},
    "prefixed": {"extra__slack__base_url": "http://127.0.0.1:9/x", "extra__slack__timeout": "3"},
}


@pytest.mark.parametrize("case", sorted(SLACK))
def test_slack_connection_and_retry_policy_are_the_same_on_both_paths(both, monkeypatch, case):
    conn_env(
        monkeypatch, "slack_x", {"conn_type": "slack", "password": "xoxb-resolver-0001", "extra": SLACK[case]}
    )
    cli, airflow = both()
    assert cli.slack("slack_x") == airflow.slack("slack_x")
    got = cli.slack("slack_x")
    default = Resolver(
        EnvConnections({"AIRFLOW_CONN_D": json.dumps({"conn_type": "slack", "password": "xoxb-d"})})
    ).slack("d")
    assert got != default.__class__(token=got.token), f"extra {case} was not honoured"
    clients = cli.slack_client("slack_x"), airflow.slack_client("slack_x")
    assert (clients[0].base_url, clients[0].timeout, clients[0].proxy) == (
        clients[1].base_url,
        clients[1].timeout,
        clients[1].proxy,
    )
    assert [type(h).__name__ for h in clients[0].retry_handlers] == [
        type(h).__name__ for h in clients[1].retry_handlers
    ]


def test_slack_token_in_an_extra_and_the_notifier_agree(both, monkeypatch, catalogue_with_slack):
    conn_env(
        monkeypatch,
        "drillbook_slack",
        {"conn_type": "slack", "extra": {"token": "xoxb-extra-0002", "max_retry_after": 7}},
    )
    cli, airflow = both()
    assert cli.slack("drillbook_slack") == airflow.slack("drillbook_slack")
    senders = [r.notifier(catalogue=catalogue_with_slack).sender for r in (cli, airflow)]
    assert [type(s).__name__ for s in senders] == ["SlackSender", "SlackSender"]
    assert senders[0].max_retry_after == senders[1].max_retry_after == 7.0


def test_without_slack_both_notifiers_use_the_outbox_of_the_settings(both, monkeypatch, catalogue_with_slack):
    monkeypatch.delenv("AIRFLOW_CONN_DRILLBOOK_SLACK", raising=False)
    monkeypatch.delenv("DRILLBOOK_CONN_DRILLBOOK_SLACK", raising=False)
    cli, airflow = both()
    senders = [r.notifier(catalogue=catalogue_with_slack).sender for r in (cli, airflow)]
    assert [type(s).__name__ for s in senders] == ["OutboxSender", "OutboxSender"]
    assert str(senders[0].path) == str(senders[1].path) == str(SETTINGS.outbox)


# -- aws: the client factory ----------------------------------------------------------------------
AWS = {
    "region_name": {"region_name": "eu-west-1"},
    "endpoint_url": {"endpoint_url": "http://127.0.0.1:5000"},
    "keys in extras": {"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "s3cr3t-key-0003"},
    "session token": {
        "aws_access_key_id": "AKIAEXAMPLE",
        "aws_secret_access_key": "s3cr3t-key-0004",
        "aws_session_token": "tok-0005",
    },
    "profile_name": {"profile_name": "drill"},
    "role_arn": {"role_arn": "arn:aws:iam::123456789012:role/r"},
    "assume_role_kwargs": {
        "role_arn": "arn:aws:iam::123456789012:role/r",
        "assume_role_kwargs": {"ExternalId": "e-0007"},
    },
    "role_session_name": {"role_arn": "arn:aws:iam::123456789012:role/r", "role_session_name": "dr"},
    "config_kwargs": {"config_kwargs": {"read_timeout": 9}},
    "verify": {"verify": False},
    "service_config": {"service_config": {"s3": {"endpoint_url": "http://127.0.0.1:5002"}}},
}


@pytest.mark.parametrize("case", sorted(AWS))
def test_aws_client_factory_is_the_same_on_both_paths(both, monkeypatch, case):
    conn_env(monkeypatch, "aws_x", {"conn_type": "aws", "extra": AWS[case]})
    cli, airflow = both()
    assert cli.aws("aws_x") == airflow.aws("aws_x")
    assert cli.aws("aws_x") != AwsClientFactory(conn_id="aws_x"), f"extra {case} was not honoured"


def test_aws_keys_as_login_and_password_and_a_real_client(both, monkeypatch):
    conn_env(
        monkeypatch,
        "aws_y",
        {
            "conn_type": "aws",
            "login": "AKIALOGIN",
            "password": "s3cr3t-0006",
            "extra": {"region_name": "eu-central-1", "endpoint_url": "http://127.0.0.1:5001"},
        },
    )
    cli, airflow = both()
    assert cli.aws("aws_y") == airflow.aws("aws_y")
    client = cli.aws("aws_y").client("s3")
    assert client.meta.region_name == "eu-central-1" and client.meta.endpoint_url == "http://127.0.0.1:5001"
    assert "s3cr3t-0006" not in repr(cli.aws("aws_y"))


def test_a_missing_aws_connection_means_the_default_chain_on_both_paths(both, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_AWS_NONE", raising=False)
    cli, airflow = both()
    assert cli.aws("aws_none") == airflow.aws("aws_none") == AwsClientFactory(conn_id="aws_none")


# -- aws: assumed roles, profiles, botocore config and verify (the AwsBaseHook extras) -------------------
ROLE = "arn:aws:iam::123456789012:role/drill-dumps"


def assumed_caller(resolver: Resolver, conn_id: str) -> str:
    return resolver.aws(conn_id).client("sts").get_caller_identity()["Arn"]


def test_role_arn_is_assumed_on_both_paths(both, aws, monkeypatch):
    conn_env(
        monkeypatch,
        "aws_role",
        {
            "conn_type": "aws",
            "extra": {
                "role_arn": ROLE,
                "region_name": "us-east-1",
                "endpoint_url": aws,
                "assume_role_kwargs": {"ExternalId": "ext-secret-0042", "DurationSeconds": 900},
            },
        },
    )
    cli, airflow = both()
    assert cli.aws("aws_role") == airflow.aws("aws_role")
    for resolver in (cli, airflow):
        assert (
            assumed_caller(resolver, "aws_role")
            == "arn:aws:sts::123456789012:assumed-role/drill-dumps/drillbook"
        )
    client = cli.aws("aws_role").client("s3")
    credentials = client._request_signer._credentials  # refreshed by botocore before the expiry STS gave
    first_key = credentials._access_key  # (private: reading .access_key would refresh)
    assert credentials.method == "sts-assume-role" and first_key != "testing"
    import datetime

    left = credentials._expiry_time - datetime.datetime.now(datetime.UTC)
    assert (
        datetime.timedelta(minutes=13) < left <= datetime.timedelta(minutes=15)
    )  # DurationSeconds reached STS
    assert (
        credentials.refresh_needed()
    )  # inside botocore's 15-minute advisory window: the next use assumes again
    assert credentials.get_frozen_credentials().access_key not in (first_key, "testing")
    from drillbook.safety.redact import redact

    assert "ext-secret-0042" not in repr(cli.aws("aws_role"))
    assert "ext-secret-0042" not in redact("ExternalId=ext-secret-0042")
    assert credentials.secret_key not in redact(f"secret {credentials.secret_key}")


def test_role_session_name_extra_and_assume_role_kwargs_win_in_that_order(both, aws, monkeypatch):
    conn_env(
        monkeypatch,
        "aws_named",
        {"conn_type": "aws", "extra": {"role_arn": ROLE, "role_session_name": "dr-7"}},
    )
    conn_env(
        monkeypatch,
        "aws_kw",
        {
            "conn_type": "aws",
            "extra": {
                "role_arn": ROLE,
                "role_session_name": "dr-7",
                "assume_role_kwargs": {"RoleSessionName": "from-kwargs"},
            },
        },
    )
    cli, airflow = both()
    for resolver in (cli, airflow):
        assert assumed_caller(resolver, "aws_named").endswith("/drill-dumps/dr-7")
        assert assumed_caller(resolver, "aws_kw").endswith("/drill-dumps/from-kwargs")


def test_a_denied_role_is_a_resource_error_naming_connection_and_role(both, aws, boto, monkeypatch):
    from moto.core.authorization import enable_iam_authentication

    from drillbook.errors import ResourceError

    boto("iam").create_user(UserName="no-rights")
    key = boto("iam").create_access_key(UserName="no-rights")["AccessKey"]
    conn_env(
        monkeypatch,
        "aws_denied",
        {
            "conn_type": "aws",
            "login": key["AccessKeyId"],
            "password": key["SecretAccessKey"],
            "extra": {"role_arn": ROLE},
        },
    )
    cli, airflow = both()
    for resolver in (cli, airflow):
        with enable_iam_authentication(), pytest.raises(ResourceError) as caught:
            resolver.aws("aws_denied").client("s3")
        message = str(caught.value)
        assert "'aws_denied'" in message and ROLE in message and "AccessDenied" in message
        assert key["SecretAccessKey"] not in message and "Traceback" not in message


def test_an_unsupported_assume_role_method_is_refused_not_ignored(both, monkeypatch):
    conn_env(
        monkeypatch,
        "aws_saml",
        {"conn_type": "aws", "extra": {"role_arn": ROLE, "assume_role_method": "assume_role_with_saml"}},
    )
    for resolver in both():
        with pytest.raises(ConfigurationError, match=r"'aws_saml'.*assume_role_with_saml.*drill-dumps"):
            resolver.aws("aws_saml")


@pytest.fixture
def profiles(tmp_path, monkeypatch, boto):
    """A shared credentials/config file pair with profile ``drill``: a moto IAM user, region ap-south-1."""
    boto("iam").create_user(UserName="drill-user")
    key = boto("iam").create_access_key(UserName="drill-user")["AccessKey"]
    (tmp_path / "credentials").write_text(
        f"[drill]\naws_access_key_id = {key['AccessKeyId']}\n"
        f"aws_secret_access_key = {key['SecretAccessKey']}\n"
    )
    (tmp_path / "config").write_text("[profile drill]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # the environment's region would win over the profile's
    return "arn:aws:iam::123456789012:user/drill-user"


def test_profile_name_is_used_on_both_paths(both, aws, profiles, monkeypatch):
    conn_env(
        monkeypatch, "aws_prof", {"conn_type": "aws", "extra": {"profile_name": "drill", "endpoint_url": aws}}
    )
    cli, airflow = both()
    assert cli.aws("aws_prof") == airflow.aws("aws_prof")
    for resolver in (cli, airflow):
        client = resolver.aws("aws_prof").client("sts")
        assert client.meta.region_name == "ap-south-1"
        assert client.get_caller_identity()["Arn"] == profiles  # not the worker's AWS_ACCESS_KEY_ID


def test_a_missing_profile_is_a_configuration_error_naming_it(both, aws, profiles, monkeypatch):
    conn_env(monkeypatch, "aws_noprof", {"conn_type": "aws", "extra": {"profile_name": "no-such-profile"}})
    for resolver in both():
        with pytest.raises(ConfigurationError, match=r"'aws_noprof'.*'no-such-profile'"):
            resolver.aws("aws_noprof").client("s3")


def test_config_kwargs_merge_over_the_defaults_and_verify_reaches_the_client(both, monkeypatch):
    conn_env(
        monkeypatch,
        "aws_cfg",
        {
            "conn_type": "aws",
            "extra": {
                "config_kwargs": {"read_timeout": 7, "retries": {"max_attempts": 5}},
                "verify": False,
                "endpoint_url": "http://127.0.0.1:9",
            },
        },
    )
    cli, airflow = both()
    assert cli.aws("aws_cfg") == airflow.aws("aws_cfg")
    for resolver in (cli, airflow):
        client = resolver.aws("aws_cfg").client("s3", "eu-west-1")
        assert client.meta.config.read_timeout == 7 and client.meta.config.connect_timeout == 5
        assert client.meta.config.retries == {
            "mode": "standard",
            "total_max_attempts": 6,
        }  # botocore: 5 retries + 1
        assert client._endpoint.http_session._verify is False
    healthy = AwsClientFactory(conn_id="d").client("s3", "eu-west-1")
    assert healthy.meta.config.read_timeout == 30 and healthy._endpoint.http_session._verify is not False


def test_verify_as_a_ca_bundle_path_and_as_a_uri_string(both, monkeypatch):
    conn_env(monkeypatch, "aws_ca", {"conn_type": "aws", "extra": {"verify": "/etc/ssl/certs/drill-ca.pem"}})
    conn_env(monkeypatch, "aws_uri", "aws://?verify=false&region_name=eu-west-1")
    for resolver in both():
        assert resolver.aws("aws_ca").verify == "/etc/ssl/certs/drill-ca.pem"
        assert resolver.aws("aws_uri").verify is False


@pytest.mark.parametrize(
    "config, needle",
    [
        ({"read_timeout": None}, "config_kwargs.read_timeout"),
        ({"connect_timeout": 0}, "config_kwargs.connect_timeout"),
        ({"retries": "many"}, "config_kwargs.retries"),
    ],
)
def test_config_kwargs_cannot_remove_a_timeout(both, monkeypatch, config, needle):
    conn_env(monkeypatch, "aws_bad", {"conn_type": "aws", "extra": {"config_kwargs": config}})
    for resolver in both():
        with pytest.raises(ConfigurationError, match=rf"'aws_bad'.*{needle}"):
            resolver.aws("aws_bad")


def test_config_kwargs_botocore_does_not_know_is_a_clear_error(both, monkeypatch):
    conn_env(monkeypatch, "aws_unk", {"conn_type": "aws", "extra": {"config_kwargs": {"read_timout": 9}}})
    for resolver in both():
        with pytest.raises(ConfigurationError, match=r"'aws_unk'.*config_kwargs.*read_timout"):
            resolver.aws("aws_unk").client("s3", "eu-west-1")


def test_service_config_endpoint_wins_for_its_service_only(both, monkeypatch):
    conn_env(
        monkeypatch,
        "aws_svc",
        {
            "conn_type": "aws",
            "extra": {
                "endpoint_url": "http://127.0.0.1:5001",
                "service_config": {"s3": {"endpoint_url": "http://127.0.0.1:5002"}},
            },
        },
    )
    for resolver in both():
        factory = resolver.aws("aws_svc")
        assert factory.client("s3", "eu-west-1").meta.endpoint_url == "http://127.0.0.1:5002"
        assert factory.client("sqs", "eu-west-1").meta.endpoint_url == "http://127.0.0.1:5001"


def test_assume_role_kwargs_that_are_not_an_object_are_refused(both, monkeypatch):
    conn_env(
        monkeypatch,
        "aws_kwbad",
        {"conn_type": "aws", "extra": {"role_arn": ROLE, "assume_role_kwargs": ["x"]}},
    )
    for resolver in both():
        with pytest.raises(
            ConfigurationError, match=r"'aws_kwbad'.*assume_role_kwargs.*JSON object, found list"
        ):
            resolver.aws("aws_kwbad")


def test_unknown_aws_extras_are_warned_about_by_name_not_fatal(both, monkeypatch, caplog):
    conn_env(
        monkeypatch,
        "aws_odd",
        {
            "conn_type": "aws",
            "extra": {"region_name": "eu-west-1", "s3_config_file": "/x", "session_kwargs": {}},
        },
    )
    for resolver in both():
        caplog.clear()
        with caplog.at_level("WARNING", logger="drillbook.resources.resolver"):
            assert resolver.aws("aws_odd").region_name == "eu-west-1"
        assert "'aws_odd'" in caplog.text and "s3_config_file, session_kwargs" in caplog.text


# -- http (webhooks, pagers) and missing connections --------------------------------------------------
def test_http_connection_fields_are_the_same_on_both_paths(both, monkeypatch):
    conn_env(
        monkeypatch,
        "hook_x",
        {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": 8099,
            "schema": "http",
            "password": "hook-secret-0007",
            "extra": {"endpoint": "/hooks/dr"},
        },
    )
    cli, airflow = both()
    a, b = cli.connection("hook_x", conn_type="http"), airflow.connection("hook_x", conn_type="http")
    assert (a.host, a.port, a.schema, a.password, a.extra) == (b.host, b.port, b.schema, b.password, b.extra)


def test_a_missing_connection_is_the_same_clear_error_on_both_paths(both, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NOWHERE_X", raising=False)
    cli, airflow = both()
    messages = []
    for resolver in (cli, airflow):
        with pytest.raises(ConnectionNotConfigured) as err:
            resolver.postgres_dsn("nowhere_x")
        messages.append(str(err.value))
    assert (
        messages[0] == messages[1]
        and "'nowhere_x'" in messages[0]
        and "AIRFLOW_CONN_NOWHERE_X" in messages[0]
    )


def test_a_bad_slack_extra_is_the_same_error_on_both_paths(both, monkeypatch, catalogue_with_slack):
    conn_env(
        monkeypatch,
        "drillbook_slack",
        {"conn_type": "slack", "password": "xoxb-x", "extra": {"max_retry_after": "soon"}},
    )
    cli, airflow = both()
    messages = []
    for resolver in (cli, airflow):
        with pytest.raises(NotificationFailed) as err:
            resolver.notifier(catalogue=catalogue_with_slack)
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "'max_retry_after'" in messages[0] and "'soon'" in messages[0]


@pytest.fixture
def catalogue_with_slack(tmp_path):
    from drillbook.catalogue import load_catalogue

    # the shipped catalogue: its defaults.slack.connection is drillbook_slack
    catalogue = load_catalogue(REPO / "include" / "drills.yaml")
    assert catalogue.defaults.slack.connection == "drillbook_slack"
    return catalogue


def test_a_default_client_does_not_change_the_retries_of_later_clients(both, monkeypatch):
    """botocore rewrites the retries dict it is given: a shared default dict once made every later
    connection's config_kwargs.retries.max_attempts ignored (found by the order of the full suite)."""
    before = AwsClientFactory(conn_id="first").client("s3", "eu-west-1")
    assert before.meta.config.retries == {"mode": "standard", "total_max_attempts": 4}
    conn_env(
        monkeypatch,
        "aws_retry",
        {"conn_type": "aws", "extra": {"config_kwargs": {"retries": {"max_attempts": 5}}}},
    )
    for resolver in both():
        factory = resolver.aws("aws_retry")
        for _ in range(2):  # the same factory twice: its own config is not consumed either
            client = factory.client("s3", "eu-west-1")
            assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 6}
    again = AwsClientFactory(conn_id="last").client("s3", "eu-west-1")
    assert again.meta.config.retries == {"mode": "standard", "total_max_attempts": 4}
