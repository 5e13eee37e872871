"""Reported defects of backup-restore (issue 10 items 5-8, issue 11 item 8), each reproduced red first.

Real parts only: the test PostgreSQL server with a real non-superuser CREATEDB
role, real dumps, moto's server, a loopback proxy that cuts a body mid-stream.
"""

from __future__ import annotations

import json
import uuid

import pytest

from drillbook.cli import main
from tests.backup_restore.conftest import codes, make_drill


# --- 10.6 and 10.7: ownership errors under a CREATEDB scratch role ---------------------------
@pytest.fixture
def createdb_role(pg):
    """A real LOGIN CREATEDB role (not a superuser) and an existing role that will own objects."""
    suffix = uuid.uuid4().hex[:8]
    drill_role, owner = f"drill_creator_{suffix}", f"app_owner_{suffix}"
    pg.execute("postgres", f"create role {drill_role} login createdb password 'drill-pw-{suffix}'")
    pg.execute("postgres", f"create role {owner}")
    dsn = pg.admin_dsn
    from drillbook.pg import parse

    params = parse(dsn)
    params.update(user=drill_role, password=f"drill-pw-{suffix}", dbname="postgres")
    scratch_dsn = " ".join(f"{k}='{v}'" for k, v in params.items())
    yield scratch_dsn, owner
    for db in pg.databases("variant_"):
        pg.execute(db, f"reassign owned by {owner} to postgres")
    pg.execute("postgres", f"drop role if exists {owner}")
    pg.execute("postgres", f"drop role if exists {drill_role}")


def dump_owned_by(variant, owner: str):
    def own(dsn):
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            for table in ("public.customers", "public.orders"):
                conn.execute(f"alter table {table} owner to {owner}")

    return variant(own)


def test_ownership_errors_under_a_createdb_role_are_classified_with_the_no_owner_hint(pg, variant, createdb_role, drill_runner):
    scratch_dsn, owner = createdb_role
    path = dump_owned_by(variant, owner)
    result = drill_runner(make_drill(str(path.parent)), scratch_dsn=scratch_dsn)
    found = [f for f in result.findings if f.code == "OWNERSHIP_NOT_RESTORABLE"]
    assert owner in {f.subject for f in found}, codes(result)
    assert all("restore.no_owner: true" in f.hint for f in found)
    assert "RESTORE_ERROR" not in codes(result)
    # The data came back; only ownership was lost: the same verdict as a missing role.
    assert result.verdict.value == "PASS", codes(result)
    # 10.6: pg_restore exited 1 with error lines, so the restore phase line is not green.
    phase = next(p for p in result.phases if p.name == "restore")
    assert phase.status == "failed" and "exit 1" in phase.detail and "error line(s)" in phase.detail
    # The hint reaches on-call: the Slack report renders it.
    from drillbook.notify.render import RenderOptions, render_result

    report = render_result(result, None, None, options=RenderOptions(max_findings=5))
    assert "restore.no_owner: true" in json.dumps(report.main.blocks)
    # ... and the same dump restores cleanly with the option the hint names.
    clean = drill_runner(make_drill(str(path.parent), restore={"no_owner": True}), scratch_dsn=scratch_dsn)
    assert clean.verdict.value == "PASS" and "OWNERSHIP_NOT_RESTORABLE" not in codes(clean), codes(clean)
    assert next(p for p in clean.phases if p.name == "restore").status == "ok"


def test_cli_shows_the_failed_restore_phase_and_the_no_owner_hint(pg, variant, createdb_role, capsys):
    scratch_dsn, owner = createdb_role
    path = dump_owned_by(variant, owner)
    code = main(["run", "backup-restore", "--backup", str(path), "--scratch-dsn", scratch_dsn])
    out = capsys.readouterr().out
    assert code == 0, out
    restore_line = next(line for line in out.splitlines() if "] restore" in line)
    assert "[FAILED]" in restore_line and "exit 1" in restore_line, restore_line
    assert "OWNERSHIP_NOT_RESTORABLE" in out and "restore.no_owner: true" in out
    assert "drill-pw-" not in out


# --- 10.5: a relative --backup is relative to the working directory ------------------------
def test_relative_backup_on_the_command_line_is_relative_to_the_working_directory(pg, dumps, tmp_path, monkeypatch, capsys):
    import shutil

    import yaml

    (tmp_path / "dumps").mkdir()
    shutil.copy(dumps["custom"], tmp_path / "dumps" / "x.dump")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "x.yaml").write_text(yaml.safe_dump({"objectives": {"rto": "15m", "rpo": "26h"}}))
    monkeypatch.chdir(tmp_path)
    code = main(["run", "backup-restore", "--backup", "dumps/x.dump", "--config", "cfg/x.yaml",
                 "--scratch-dsn", pg.admin_dsn, "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0, [f["code"] for f in payload["findings"]]
    assert "BACKUP_MISSING" not in [f["code"] for f in payload["findings"]]


def test_backup_missing_names_the_absolute_path_tried(pg, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["run", "backup-restore", "--backup", "dumps/none.dump", "--scratch-dsn", pg.admin_dsn, "--json"])
    payload = json.loads(capsys.readouterr().out)
    missing = [f for f in payload["findings"] if f["code"] == "BACKUP_MISSING"]
    assert code == 1 and missing
    assert str(tmp_path / "dumps" / "none.dump") in missing[0]["message"]


def test_a_catalogue_location_is_relative_to_the_catalogue_and_the_message_says_where(drill_runner, tmp_path):
    result = drill_runner(make_drill("backups/none"), base_dir=tmp_path / "cat")
    missing = [f for f in result.findings if f.code == "BACKUP_MISSING"]
    assert missing and str(tmp_path / "cat" / "backups" / "none") in missing[0].message
