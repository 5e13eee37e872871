"""Every healthy format PASSes with no finding at or above medium."""

from __future__ import annotations

import pytest

from tests.backup_restore.conftest import codes, make_drill, serious


@pytest.mark.parametrize("fmt", ["custom", "directory", "tar", "plain", "plain.gz"])
def test_local_format_passes(fmt, dumps, shop, drill_runner):
    result = drill_runner(make_drill(str(dumps[fmt].parent)), source_dsn=shop.dsn)
    assert serious(result) == [], [(f.code, f.message) for f in result.findings]
    assert result.verdict.value == "PASS", codes(result)
    assert result.measurements.rto_seconds is not None
    assert result.measurements.values["archive_format"] == fmt
    assert result.measurements.values["rpo_source"] == "rpo_probe"
