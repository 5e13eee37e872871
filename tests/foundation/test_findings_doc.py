"""docs/findings.md is the registry, and every code the code base emits is registered."""

from __future__ import annotations

import re
from pathlib import Path

from drillbook.findings import REGISTRY, markdown_table

REPO = Path(__file__).resolve().parents[2]


def test_findings_doc_matches_registry():
    doc = (REPO / "docs" / "findings.md").read_text()
    assert doc == markdown_table(), "docs/findings.md is stale: run `make findings-doc`"


def test_every_code_used_in_the_code_is_registered():
    used: set[str] = set()
    pattern = re.compile(r"""(?:find|finding)\(\s*["']([A-Z][A-Z0-9_]+)["']""")
    for path in (REPO / "plugins" / "drillbook").rglob("*.py"):
        used.update(pattern.findall(path.read_text()))
    assert used, "the scan found no finding codes at all"
    assert sorted(used - set(REGISTRY)) == []
