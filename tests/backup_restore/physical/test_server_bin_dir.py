"""Choosing the restored major's server binaries (cluster.server_bin_dir): the first fit, found without asking the
rest (each candidate is a ``--version`` process; pgserver's directory costs an import)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drillbook.drills.backup_restore import tools
from drillbook.drills.backup_restore.physical.restored import RecoveryProblem, server_bin_dir


def _fake_bin(root: Path, name: str, version: str, calls: Path) -> Path:
    d = root / name
    d.mkdir()
    (d / "pg_ctl").write_text(f"#!/bin/sh\necho {name} >> {calls}\necho 'pg_ctl (PostgreSQL) {version}'\n")
    (d / "pg_ctl").chmod(0o755)
    for other in ("postgres", "pg_controldata"):
        (d / other).write_text("#!/bin/sh\nexit 1\n")
        (d / other).chmod(0o755)
    return d


@pytest.fixture
def fake_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    calls = tmp_path / "calls.log"
    calls.touch()
    dirs = [_fake_bin(tmp_path, n, v, calls) for n, v in (("a", "97.1"), ("b", "98.2"), ("c", "98.3"))]
    monkeypatch.setenv("PATH", ":".join(str(d) for d in dirs))
    looked_up: list[str] = []
    monkeypatch.setattr(tools, "_pgserver_bin", lambda: looked_up.append("pgserver") or None)
    tools.tool_version.cache_clear()
    return calls, looked_up


def test_the_first_fit_is_chosen_and_no_later_candidate_is_run(fake_path: tuple[Path, list[str]]) -> None:
    calls, looked_up = fake_path
    assert server_bin_dir(98).name == "b"
    assert calls.read_text().split() == ["a", "b"]  # c (also 98) and pgserver were never asked
    assert looked_up == []


def test_no_fit_asks_every_candidate_and_names_them(fake_path: tuple[Path, list[str]]) -> None:
    calls, looked_up = fake_path
    with pytest.raises(RecoveryProblem) as err:
        server_bin_dir(96)
    assert err.value.code == "SERVER_BINARIES_MISSING"
    assert "pg_ctl 97.1" in err.value.message and "pg_ctl 98.3" in err.value.message
    assert calls.read_text().split() == ["a", "b", "c"] and looked_up == ["pgserver"]
