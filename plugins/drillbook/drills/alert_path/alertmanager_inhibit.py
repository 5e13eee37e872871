"""Name the inhibit rule that muted a canary, from Alertmanager's running configuration.

Rules this module enforces:
- Alertmanager's API says only *which alerts* inhibit the canary
  (``inhibitedBy`` fingerprints); the finding must name the *rule*, so the
  running configuration (``GET /api/v2/status`` → ``config.original``) is read
  and every inhibit rule is matched the way Alertmanager does: target matchers
  against the canary's labels, source matchers against an inhibiting alert's
  labels, and the ``equal`` labels equal on both (missing counts as empty);
- the configuration is untrusted input: at most ``CONFIG_MAX_BYTES``, YAML
  with aliases refused, regular expressions that do not compile (or label
  values longer than ``VALUE_MAX``) match nothing; anything malformed names no
  rule, it never crashes the drill.
"""

from __future__ import annotations

import re
from typing import Any

CONFIG_MAX_BYTES = 1024 * 1024
VALUE_MAX = 256
_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|(.*?))\s*$')

Matcher = tuple[str, str, str]


def inhibit_rules(config_text: Any) -> list[dict[str, Any]]:
    """The ``inhibit_rules`` of an Alertmanager configuration text, or [] when it cannot be read safely."""
    import yaml

    if not isinstance(config_text, str) or len(config_text) > CONFIG_MAX_BYTES:
        return []
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(config_text, Loader=loader)):
            return []
        config = yaml.load(config_text, Loader=loader)  # noqa: S506 - a safe loader, aliases refused above
    except yaml.YAMLError:
        return []
    rules = config.get("inhibit_rules") if isinstance(config, dict) else None
    return [r for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []


def matchers(rule: dict[str, Any], side: str) -> list[Matcher] | None:
    """The ``source``/``target`` matchers of a rule (new ``*_matchers`` and legacy ``*_match``/``*_match_re``)."""
    found: list[Matcher] = []
    for text in rule.get(f"{side}_matchers") or []:
        m = _MATCHER.match(str(text))
        if not m:
            return None
        value = m.group(3) if m.group(3) is not None else (m.group(4) or "")
        found.append((m.group(1), m.group(2), value.replace('\\"', '"')))
    for op, key in (("=", f"{side}_match"), ("=~", f"{side}_match_re")):
        legacy = rule.get(key) or {}
        if not isinstance(legacy, dict):
            return None
        found += [(str(k), op, str(v)) for k, v in legacy.items()]
    return found


def _matches(found: list[Matcher] | None, labels: dict[str, Any]) -> bool:
    if found is None:
        return False
    for name, op, value in found:
        actual = str(labels.get(name, ""))
        if op in ("=", "!="):
            ok = actual == value
        else:
            if len(value) > VALUE_MAX or len(actual) > VALUE_MAX:
                return False
            try:
                ok = re.fullmatch(value, actual) is not None
            except re.error:
                return False
        if ok != (op in ("=", "=~")):
            return False
    return True


def describe(rule: dict[str, Any]) -> str:
    """``source {a="b"} -> target {c=~"d"} equal [e]`` for a finding."""

    def side(name: str) -> str:
        return "{" + ", ".join(f'{k}{op}"{v}"' for k, op, v in matchers(rule, name) or []) + "}"

    equal = [str(e) for e in rule.get("equal") or []]
    return f"source {side('source')} -> target {side('target')}" + (f" equal {equal}" if equal else "")


def naming(
    rules: list[dict[str, Any]], canary_labels: dict[str, Any], sources: list[dict[str, Any]]
) -> list[str]:
    """Every rule (numbered from 1, as in the file) that an inhibiting source alert and the canary both satisfy."""
    named = []
    for number, rule in enumerate(rules, 1):
        if not _matches(matchers(rule, "target"), canary_labels):
            continue
        equal = [str(e) for e in rule.get("equal") or []]
        for source in sources:
            if _matches(matchers(rule, "source"), source) and all(
                str(source.get(e, "")) == str(canary_labels.get(e, "")) for e in equal
            ):
                named.append(f"inhibit rule #{number} ({describe(rule)})")
                break
    return named
