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

from drillbook.errors import ConnectionNotConfigured, NotificationFailed
from drillbook.resources.resolver import AwsClientFactory, EnvConnections, Resolver
from drillbook.settings import load_settings

pytestmark = pytest.mark.airflow
REPO = Path(__file__).resolve().parents[2]

SETTINGS = load_settings({"DRILLBOOK_SPOOL": "/tmp/drillbook-resolver-spool.jsonl", "DRILLBOOK_OUTBOX": "/tmp/o.jsonl"})


@pytest.fixture
def both(airflow_db, monkeypatch):
    from drillbook.airflow.resources import AirflowConnections

    def make() -> tuple[Resolver, Resolver]:
        return (Resolver(EnvConnections(), settings=SETTINGS), Resolver(AirflowConnections(), settings=SETTINGS))

    return make


def conn_env(monkeypatch, conn_id: str, value: dict | str) -> None:
    monkeypatch.delenv(f"DRILLBOOK_CONN_{conn_id.upper()}", raising=False)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value if isinstance(value, str) else json.dumps(value))


# -- postgres: every extra honoured, URI and JSON ---------------------------------------------------
POSTGRES = {
    "uri": "postgresql://drill%40er:p%40ss@db.example:6543/shop",
    "sslmode": "postgresql://u:pw@db.example:5432/shop?sslmode=verify-full",
    "sslrootcert": "postgresql://u:pw@db.example/shop?sslrootcert=%2Fetc%2Fca.pem",
    "connect_timeout": "postgresql://u:pw@db.example/shop?connect_timeout=7",
    "application_name": "postgresql://u:pw@db.example/shop?application_name=drill-x",
    "json dbname extra": {"conn_type": "postgres", "host": "db.example", "login": "u", "password": "pw",
                          "port": 5433, "extra": {"dbname": "ledger", "sslmode": "require"}},
    "no database": {"conn_type": "postgres", "host": "db.example", "login": "u", "password": "pw"},
}


@pytest.mark.parametrize("case", sorted(POSTGRES))
def test_postgres_dsn_is_the_same_on_both_paths(both, monkeypatch, case):
    conn_env(monkeypatch, "db_x", POSTGRES[case])
    cli, airflow = both()
    assert cli.postgres_dsn("db_x") == airflow.postgres_dsn("db_x")
    dsn = cli.postgres_dsn("db_x")
    for needle in {"sslmode": "sslmode=verify-full", "sslrootcert": "sslrootcert=/etc/ca.pem",
                   "connect_timeout": "connect_timeout=7", "application_name": "application_name=drill-x",
                   "json dbname extra": "dbname=ledger", "no database": "dbname=postgres"}.get(case, "").split():
        assert needle in dsn, dsn  # the extra was honoured, not just equally dropped
    ledgers = cli.ledger("db_x"), airflow.ledger("db_x")
    assert ledgers[0]._dsn == ledgers[1]._dsn and ledgers[0].spool.path == ledgers[1].spool.path == SETTINGS.spool_file


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
    conn_env(monkeypatch, "slack_x", {"conn_type": "slack", "password": "xoxb-resolver-0001", "extra": SLACK[case]})
    cli, airflow = both()
    assert cli.slack("slack_x") == airflow.slack("slack_x")
    got = cli.slack("slack_x")
    default = Resolver(EnvConnections({"AIRFLOW_CONN_D": json.dumps({"conn_type": "slack", "password": "xoxb-d"})})).slack("d")
    assert got != default.__class__(token=got.token), f"extra {case} was not honoured"
    clients = cli.slack_client("slack_x"), airflow.slack_client("slack_x")
    assert (clients[0].base_url, clients[0].timeout, clients[0].proxy) == (clients[1].base_url, clients[1].timeout, clients[1].proxy)
    assert [type(h).__name__ for h in clients[0].retry_handlers] == [type(h).__name__ for h in clients[1].retry_handlers]


def test_slack_token_in_an_extra_and_the_notifier_agree(both, monkeypatch, catalogue_with_slack):
    conn_env(monkeypatch, "drillbook_slack", {"conn_type": "slack", "extra": {"token": "xoxb-extra-0002", "max_retry_after": 7}})
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
    "session token": {"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "s3cr3t-key-0004",
                      "aws_session_token": "tok-0005"},
}


@pytest.mark.parametrize("case", sorted(AWS))
def test_aws_client_factory_is_the_same_on_both_paths(both, monkeypatch, case):
    conn_env(monkeypatch, "aws_x", {"conn_type": "aws", "extra": AWS[case]})
    cli, airflow = both()
    assert cli.aws("aws_x") == airflow.aws("aws_x")
    assert cli.aws("aws_x") != AwsClientFactory(conn_id="aws_x"), f"extra {case} was not honoured"


def test_aws_keys_as_login_and_password_and_a_real_client(both, monkeypatch):
    conn_env(monkeypatch, "aws_y", {"conn_type": "aws", "login": "AKIALOGIN", "password": "s3cr3t-0006",
                                    "extra": {"region_name": "eu-central-1", "endpoint_url": "http://127.0.0.1:5001"}})
    cli, airflow = both()
    assert cli.aws("aws_y") == airflow.aws("aws_y")
    client = cli.aws("aws_y").client("s3")
    assert client.meta.region_name == "eu-central-1" and client.meta.endpoint_url == "http://127.0.0.1:5001"
    assert "s3cr3t-0006" not in repr(cli.aws("aws_y"))


def test_a_missing_aws_connection_means_the_default_chain_on_both_paths(both, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_AWS_NONE", raising=False)
    cli, airflow = both()
    assert cli.aws("aws_none") == airflow.aws("aws_none") == AwsClientFactory(conn_id="aws_none")


# -- http (webhooks, pagers) and missing connections --------------------------------------------------
def test_http_connection_fields_are_the_same_on_both_paths(both, monkeypatch):
    conn_env(monkeypatch, "hook_x", {"conn_type": "http", "host": "127.0.0.1", "port": 8099, "schema": "http",
                                     "password": "hook-secret-0007", "extra": {"endpoint": "/hooks/dr"}})
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
    assert messages[0] == messages[1] and "'nowhere_x'" in messages[0] and "AIRFLOW_CONN_NOWHERE_X" in messages[0]


def test_a_bad_slack_extra_is_the_same_error_on_both_paths(both, monkeypatch, catalogue_with_slack):
    conn_env(monkeypatch, "drillbook_slack", {"conn_type": "slack", "password": "xoxb-x", "extra": {"max_retry_after": "soon"}})
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
