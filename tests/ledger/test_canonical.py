"""Pin the canonical form: an auditor's offline verifier depends on these exact bytes."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from drillbook.ledger.canonical import (
    GENESIS_HASH,
    canonical_json,
    format_ts,
    normalise,
    record_document,
    record_hash,
    record_text,
)
from drillbook.safety.redact import forget_secrets, register_secret

FIELDS = dict(
    seq=1,
    recorded_at=datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC),
    record_type="drill",
    kind="backup_restore",
    drill="orders",
    target="db:5432/orders",
    verdict="PASS",
    controls=["SOC2:A1.2"],
    dag_id="dr_backup_restore__orders",
    run_id="r1",
    task_id="drill",
    map_index=-1,
    try_number=1,
    trigger="scheduled",
    result={"verdict": "PASS", "b": [1, 2.5, None], "a": "żółć"},
    prev_hash=GENESIS_HASH,
)
GOLDEN_TEXT = (
    '{"controls":["SOC2:A1.2"],"dag_id":"dr_backup_restore__orders","drill":"orders","kind":"backup_restore",'
    '"map_index":-1,"prev_hash":"' + "0" * 64 + '","record_type":"drill",'
    '"recorded_at":"2026-01-31T12:00:00.123456Z","result":{"a":"żółć","b":[1,2.5,null],"verdict":"PASS"},'
    '"run_id":"r1","seq":1,"target":"db:5432/orders","task_id":"drill","trigger":"scheduled","try_number":1,'
    '"verdict":"PASS"}'
)
GOLDEN_HASH = "bd5b8a88493b6d161e45a36af5a4a93af5a83ffb8257515964be5ab4bd576708"


def test_the_canonical_text_and_hash_are_pinned():
    assert record_text(FIELDS) == GOLDEN_TEXT == canonical_json(record_document(FIELDS))
    assert record_hash(FIELDS) == GOLDEN_HASH
    assert hashlib.sha256((GENESIS_HASH + GOLDEN_TEXT).encode()).hexdigest() == GOLDEN_HASH


def test_a_result_given_as_stored_text_is_hashed_verbatim():
    stored = dict(FIELDS, result=canonical_json(FIELDS["result"]))
    assert record_hash(stored) == GOLDEN_HASH
    reformatted = dict(FIELDS, result=json.dumps(FIELDS["result"]))  # same content, other bytes
    assert record_hash(reformatted) != GOLDEN_HASH


def test_timestamps_are_utc_with_microseconds():
    cet = timezone(timedelta(hours=1))
    assert format_ts(datetime(2026, 1, 31, 13, 0, 0, tzinfo=cet)) == "2026-01-31T12:00:00.000000Z"
    with pytest.raises(ValueError, match="no time zone"):
        format_ts(datetime(2026, 1, 31))


def test_normalise_redacts_keys_and_values_and_makes_json_safe():
    register_secret("k3y-s3cret")
    try:
        doc = normalise(
            {"k3y-s3cret": "a k3y-s3cret", "n": float("nan"), "i": float("-inf"), "z": "a\x00\ud800"}
        )
    finally:
        forget_secrets()
    assert doc == {"***": "a ***", "n": "NaN", "i": "-Infinity", "z": "a\ufffd\ufffd"}
    canonical_json(doc)  # NaN would raise here


def test_the_fast_record_text_equals_the_general_canonical_form():
    """verify hashes through a fast path; it must give byte for byte the general canonical JSON."""
    from datetime import UTC, datetime

    from drillbook.ledger.canonical import _fast_record_text, canonical_json, record_document

    awkward = [
        "plain",
        "żółć ✓ 𝄞",
        'q"uote\\back/slash',
        "ctl\x01\x1f\n\t\r\b\f",
        "\u2028\u2029\x7f",
        "x\ud800y",
        "",
    ]
    for i, text in enumerate(awkward):
        result = {"k": text, "n": [1, 2.5, None, True], "z": {"b": 1, "a": text}}
        fields = {
            "seq": i + 1,
            "recorded_at": datetime(2026, 1, 31, 12, 0, i, 123, tzinfo=UTC),
            "record_type": "drill",
            "kind": text,
            "drill": text,
            "target": text,
            "verdict": "PASS",
            "controls": [text, "SOC2:A1.2"],
            "dag_id": text,
            "run_id": text,
            "task_id": text,
            "map_index": -1,
            "try_number": 3,
            "trigger": text,
            "result": canonical_json(result),
            "prev_hash": "0" * 64,
        }
        general = canonical_json(record_document({**fields, "result": result}))
        assert _fast_record_text(fields) == general
    assert _fast_record_text({**fields, "result": result}) is None  # a parsed result takes the general path
