"""``drillbook run backup-restore``: phases as they complete, JSON, exit codes, ledger recording as manual."""

from __future__ import annotations

import json

import pytest
import yaml

from drillbook.cli import main
from tests.backup_restore.conftest import MIN_ROWS


def write_catalogue(path, location, **drill_extra):
    drill = {
        "name": "shop_cli",
        "kind": "backup_restore",
        "schedule": "@daily",
        "controls": ["SOC2:A1.2", "ISO27001:A.8.13"],
        "source": {"connection": "drillbook_source"},
        "backup": {"location": location},
        "scratch": {"connection": "drillbook_scratch"},
        "objectives": {"rto": "15m", "rpo": "26h"},
        "verify": {"min_rows": MIN_ROWS, "rpo_probe": "select max(created_at) from public.orders"},
        **drill_extra,
    }
    path.write_text(yaml.safe_dump({"version": 1, "drills": [drill]}))
    return path


def test_ad_hoc_healthy_prints_phases_and_exits_0(pg, dumps, capsys):
    code = main(["run", "backup-restore", "--backup", str(dumps["custom"]), "--scratch-dsn", pg.admin_dsn])
    out = capsys.readouterr().out
    assert code == 0, out
    for phase in (
        "scratch",
        "locate",
        "fetch",
        "inspect",
        "restore",
        "verify.structure",
        "measure",
        "teardown",
    ):
        assert f"] {phase}" in out
    assert "RTO " in out and "RPO " in out
    assert "verdict: PASS" in out


def test_ad_hoc_json_broken_exits_1(pg, dumps, tmp_path, capsys):
    bad = tmp_path / "shop.sql"
    text = dumps["plain"].read_bytes()
    bad.write_bytes(text[: text.index(b"COPY public.orders") + 3000])
    code = main(["run", "backup-restore", "--backup", str(bad), "--scratch-dsn", pg.admin_dsn, "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 1
    assert payload["verdict"] == "FAIL"
    assert "ARCHIVE_TRUNCATED" in [f["code"] for f in payload["findings"]]


def test_ad_hoc_refused_scratch_exits_2(shop, dumps, capsys):
    code = main(
        [
            "run",
            "backup-restore",
            "--backup",
            str(dumps["custom"]),
            "--scratch-dsn",
            shop.dsn,
            "--source-dsn",
            shop.dsn,
            "--json",
        ]
    )
    payload = json.loads(capsys.readouterr().out)
    assert code == 2
    assert [f["code"] for f in payload["findings"]] == ["SCRATCH_UNSAFE"]


def test_ad_hoc_settings_file(pg, dumps, tmp_path, capsys):
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        yaml.safe_dump({"objectives": {"rto": 0.01, "rpo": "26h"}, "verify": {"min_rows": MIN_ROWS}})
    )
    code = main(
        [
            "run",
            "backup-restore",
            "--backup",
            str(dumps["tar"]),
            "--scratch-dsn",
            pg.admin_dsn,
            "--config",
            str(settings),
            "--json",
        ]
    )
    payload = json.loads(capsys.readouterr().out)
    assert code == 1
    assert "RTO_EXCEEDED" in [f["code"] for f in payload["findings"]]


def test_missing_arguments_exit_2(capsys):
    assert main(["run", "backup-restore", "--backup", "/nowhere"]) == 2
    assert "--scratch-dsn" in capsys.readouterr().err


def test_catalogue_drill_records_manual_runs_and_reports_the_trend(
    pg, shop, dumps, ledger_dsn, tmp_path, monkeypatch, capsys
):
    catalogue = write_catalogue(tmp_path / "drills.yaml", str(dumps["custom"].parent))
    monkeypatch.setenv("DRILLBOOK_CATALOGUE", str(catalogue))
    monkeypatch.setenv("DRILLBOOK_CONN_DRILLBOOK_SCRATCH", pg.admin_dsn)
    monkeypatch.setenv("DRILLBOOK_CONN_DRILLBOOK_SOURCE", shop.dsn)
    argv = ["run", "backup-restore", "--drill", "shop_cli", "--ledger-dsn", ledger_dsn, "--no-notify"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out

    from drillbook.catalogue.common import format_duration
    from drillbook.ledger.store import Ledger

    records = Ledger(ledger_dsn).query(drill="shop_cli")
    assert len(records) == 2
    assert {r.trigger for r in records} == {"manual"}
    assert records[0].controls == ["SOC2:A1.2", "ISO27001:A.8.13"]
    # the second run compares its RTO with the first (its last good run), and the CLI prints that very sentence.
    # Not recomputed from the recorded RTO: the drill compares its unrounded RTO, so a recomputation from the
    # rounded one can land on the other side of a percent (24% vs 25% seen in CI)
    first, second = sorted(records, key=lambda r: r.seq)
    sentence = second.result["details"]["trend"]
    assert "the last good run" in sentence
    assert sentence.endswith(f"vs {format_duration(first.result['measurements']['rto_seconds'])}")
    assert sentence in out
    assert "trend" not in first.result["details"]  # the first run had no good run before it


def test_catalogue_drill_without_connection_exits_2(dumps, tmp_path, monkeypatch, capsys):
    catalogue = write_catalogue(tmp_path / "drills.yaml", str(dumps["custom"].parent))
    for var in ("AIRFLOW_CONN_DRILLBOOK_SCRATCH", "DRILLBOOK_CONN_DRILLBOOK_SCRATCH"):
        monkeypatch.delenv(var, raising=False)
    code = main(["run", "backup-restore", "--drill", "shop_cli", "--config", str(catalogue)])
    assert code == 2
    assert "drillbook_scratch" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--json"])
def test_password_never_printed(pg, dumps, flag, capsys):
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(pg.admin_dsn)
    params["password"] = "hunter2-very-secret"
    main(
        [
            "run",
            "backup-restore",
            "--backup",
            str(dumps["custom"]),
            "--scratch-dsn",
            make_conninfo("", **params),
            flag,
        ]
    )
    captured = capsys.readouterr()
    assert "hunter2-very-secret" not in captured.out + captured.err
