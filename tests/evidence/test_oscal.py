"""The pack's OSCAL assessment-results document validates against NIST's official schema (OSCAL 1.0.6)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import jsonschema
import pytest
import regex
from jsonschema import Draft7Validator, ValidationError, validators

from drillbook.evidence.oscal import oscal_id

from .test_pack import _pack, filled, key  # noqa: F401  (fixtures)

SCHEMA = Path(__file__).parent / "oscal" / "oscal_assessment-results_schema.json"


def _pattern(validator, pattern, instance, schema):
    # The schema's patterns are XML-Schema/ECMAScript style (\p{L}); the `regex` package reads them, `re` cannot.
    if validator.is_type(instance, "string") and not regex.search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


OscalValidator = validators.extend(Draft7Validator, {"pattern": _pattern})


def _validator() -> jsonschema.protocols.Validator:
    return OscalValidator(json.loads(SCHEMA.read_text(encoding="utf-8")))


def test_pack_oscal_document_is_valid(filled, tmp_path, key):  # noqa: F811
    result = _pack(filled, tmp_path, key)
    with zipfile.ZipFile(result.path) as zf:
        doc = json.loads(zf.read("oscal-assessment-results.json"))
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    res = doc["assessment-results"]["results"][0]
    assert (
        res["reviewed-controls"]["control-selections"][0]["include-controls"][0]["control-id"] == "soc2-a1.2"
    )
    assert res["findings"][0]["target"]["status"]["state"] == "not-satisfied"  # 3 missed runs, 1 FAIL
    assert len(res["observations"]) == 4


def test_the_schema_test_can_fail():
    """A document missing required parts, or with a control id OSCAL does not allow, is refused."""
    validator = _validator()
    with pytest.raises(ValidationError):
        validator.validate({"assessment-results": {"uuid": "not-a-uuid"}})
    token_schema = {
        "$ref": "#/definitions/TokenDatatype",
        "definitions": json.loads(SCHEMA.read_text())["definitions"],
    }
    with pytest.raises(ValidationError):
        OscalValidator(token_schema).validate("SOC2:A1.2")
    OscalValidator(token_schema).validate(oscal_id("SOC2:A1.2"))
    assert oscal_id("NIST:CP-9(1)") == "nist-cp-9.1"
