"""Naming the inhibit rule from Alertmanager's running config (untrusted input: bounded, no aliases)."""

from __future__ import annotations

from drillbook.drills.alert_path.alertmanager_inhibit import inhibit_rules, naming

CONFIG = """
inhibit_rules:
- source_matchers: ['alertname="ClusterDown"']
  target_matchers: ['severity=~"crit.*"', 'team!="db"']
  equal: [cluster]
- source_match: {alertname: Maintenance}
  target_match_re: {service: "pay.*"}
"""
CANARY = {
    "alertname": "DrillbookTestAlert",
    "severity": "critical",
    "team": "sre",
    "cluster": "eu1",
    "service": "payments",
}


def test_names_the_rule_whose_source_and_target_and_equal_labels_match():
    rules = inhibit_rules(CONFIG)
    assert naming(rules, CANARY, [{"alertname": "ClusterDown", "cluster": "eu1"}]) == [
        'inhibit rule #1 (source {alertname="ClusterDown"} -> target {severity=~"crit.*", team!="db"} equal [\'cluster\'])'
    ]
    assert naming(rules, CANARY, [{"alertname": "Maintenance"}]) == [
        'inhibit rule #2 (source {alertname="Maintenance"} -> target {service=~"pay.*"})'
    ]


def test_equal_labels_and_negative_matchers_are_honoured():
    rules = inhibit_rules(CONFIG)
    assert (
        naming(rules, CANARY, [{"alertname": "ClusterDown", "cluster": "us1"}]) == []
    )  # equal: cluster differs
    assert (
        naming(rules, {**CANARY, "team": "db"}, [{"alertname": "ClusterDown", "cluster": "eu1"}]) == []
    )  # team!="db"


def test_hostile_or_broken_config_names_nothing():
    aliased = "r: &r {source_matchers: ['alertname=\"X\"'], target_matchers: []}\ninhibit_rules: [*r]\n"
    assert inhibit_rules(aliased) == []  # aliases refused (an alias bomb would be one)
    assert len(inhibit_rules(aliased.replace("[*r]", "[{source_matchers: ['alertname=\"X\"']}]"))) == 1
    assert inhibit_rules("inhibit_rules: [") == []
    assert inhibit_rules("x" * (2 * 1024 * 1024)) == []
    assert inhibit_rules(None) == []
    bad_regex = inhibit_rules("inhibit_rules:\n- source_matchers: ['a=~\"(\"']\n  target_matchers: []\n")
    assert naming(bad_regex, CANARY, [{"a": "("}]) == []
