"""Downloading the evidence pack from the pages: built by the CLI's code, read-only, verifies on another machine.

The ledger is real (tests/web/conftest.py) and read by the SELECT-only role; the user dependency
is the same stand-in as test_pages.py (the real Airflow auth is exercised by test_airflow_ui.py).
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from drillbook.evidence.pack_verify import verify_pack
from drillbook.ledger.checkpoint import CheckpointSettings, generate_key_hex
from drillbook.web.app import create_app
from drillbook.web.pack_download import PACK_MAX_DAYS, pack_filename
from tests.evidence.conftest import backup_drill, catalogue
from tests.web.test_pages import TOKEN, user

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
TODAY = datetime.now(UTC).date()
SINCE, UNTIL = (TODAY - timedelta(days=30)).isoformat(), TODAY.isoformat()


def _key() -> tuple[str, str]:
    return generate_key_hex()


@pytest.fixture
def key():
    return _key()


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """The app's temp dir, so the test can see that the pack's private directory is gone afterwards."""
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    return where


def _client(seeded, *, settings: CheckpointSettings | None, cat=None):
    cat = (
        cat
        if cat is not None
        else catalogue(
            backup_drill("orders_nightly"), backup_drill("api_certs", controls=("ISO27001:A.5.30",))
        )
    )
    app = create_app(
        dsn_provider=lambda: seeded.reader_dsn,
        user_dependency=user,
        catalogue=lambda: cat,
        pack_settings=(lambda: settings) if settings is not None else (lambda: CheckpointSettings()),
    )
    client = TestClient(app, root_path="/drillbook")
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    return app, client


@pytest.fixture
def signed(seeded, key, private_tmp):
    app, client = _client(seeded, settings=CheckpointSettings(private_key=key[0]))
    with client:
        yield client
    app.state.pool.close()


@pytest.fixture
def unsigned(seeded, private_tmp):
    app, client = _client(seeded, settings=None)
    with client:
        yield client
    app.state.pool.close()


def _offline_verify(pack: Path, public_key: str | None, home: Path) -> subprocess.CompletedProcess[str]:
    """`drillbook evidence verify --pack` on "another machine": no ledger DSN, no Airflow, no drillbook settings."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "PYTHONPATH": str(PLUGINS),
        "LANG": "C.UTF-8",
    }
    cmd = [sys.executable, "-m", "drillbook", "evidence", "verify", "--pack", str(pack)]
    if public_key:
        cmd += ["--public-key", public_key]
    return subprocess.run(cmd, env=env, cwd=home, capture_output=True, text=True, timeout=120, check=False)


def test_the_pack_needs_a_user(seeded):
    app, anonymous = _client(seeded, settings=None)
    with anonymous:
        anonymous.headers.pop("Authorization")
        assert anonymous.get("/pack", params={"control": "SOC2:A1.2"}).status_code == 401
        forged = anonymous.get(
            "/pack", params={"control": "SOC2:A1.2"}, headers={"Authorization": "Bearer forged"}
        )
        assert forged.status_code == 401 and "PK" not in forged.text[:2]
    app.state.pool.close()


def test_downloaded_pack_verifies_offline_and_a_flipped_byte_does_not(signed, key, tmp_path, private_tmp):
    answer = signed.get("/pack", params={"control": "SOC2:A1.2", "since": SINCE, "until": UNTIL})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    assert (
        answer.headers["content-disposition"]
        == f'attachment; filename="drillbook-SOC2_A1.2-{SINCE}-{UNTIL}.zip"'
    )
    assert answer.headers["x-drillbook-pack-signed"] == "true"
    assert list(private_tmp.iterdir()) == []  # the private build directory went with the answer
    pack = tmp_path / "downloaded.zip"
    pack.write_bytes(answer.content)

    report = verify_pack(pack, public_key=key[1])
    assert report.ok and report.signed and report.trusted_key, report.problems
    assert report.records == 4 and report.manifest["control"] == "SOC2:A1.2"  # orders_nightly's four runs

    home = tmp_path / "other-machine"
    home.mkdir()
    done = _offline_verify(pack, key[1], home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: control SOC2:A1.2" in done.stdout and "Traceback" not in done.stderr

    data = bytearray(pack.read_bytes())
    with zipfile.ZipFile(pack) as zf:
        info = zf.getinfo("records.json")
    local_extra = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = (
        info.header_offset + 30 + len(info.filename.encode()) + local_extra
    )  # records.json's compressed bytes
    data[start + info.compress_size // 2] ^= 0x01
    flipped = tmp_path / "flipped.zip"
    flipped.write_bytes(bytes(data))
    assert not verify_pack(flipped, public_key=key[1]).ok
    broken = _offline_verify(flipped, key[1], home)
    assert broken.returncode != 0 and "Traceback" not in broken.stderr
    assert "records.json" in broken.stdout + broken.stderr


def test_another_key_does_not_verify_the_download(signed, tmp_path):
    pack = tmp_path / "p.zip"
    pack.write_bytes(
        signed.get("/pack", params={"control": "SOC2:A1.2", "since": SINCE, "until": UNTIL}).content
    )
    assert not verify_pack(pack, public_key=_key()[1]).ok


def test_without_a_key_the_pack_is_unsigned_and_the_pages_say_so(unsigned, tmp_path, private_tmp):
    controls = unsigned.get("/controls", params={"since": SINCE, "until": UNTIL}).text
    assert "UNSIGNED" in controls and "no checkpoint key is configured" in controls
    answer = unsigned.get("/pack", params={"control": "SOC2:A1.2", "since": SINCE, "until": UNTIL})
    assert answer.status_code == 200 and answer.headers["x-drillbook-pack-signed"] == "false"
    pack = tmp_path / "unsigned.zip"
    pack.write_bytes(answer.content)
    report = verify_pack(pack)
    assert not report.signed and not report.problems
    home = tmp_path / "home"
    home.mkdir()
    assert _offline_verify(pack, None, home).returncode == 2  # intact but its origin cannot be checked
    assert list(private_tmp.iterdir()) == []


def test_controls_and_history_link_to_a_working_download(signed, key, tmp_path):
    controls = signed.get("/controls", params={"since": SINCE, "until": UNTIL}).text
    links = [html.unescape(h) for h in re.findall(r'<a class="pack" href="([^"]+)">', controls)]
    assert f"/drillbook/pack?control=SOC2%3AA1.2&since={SINCE}&until={UNTIL}" in links
    assert f"/drillbook/pack?control=ISO27001%3AA.5.30&since={SINCE}&until={UNTIL}" in links
    assert "signed with the checkpoint key" in controls
    history = signed.get("/history", params={"control": "ISO27001:A.5.30", "since": SINCE}).text
    (link,) = [html.unescape(h) for h in re.findall(r'<a class="pack" href="([^"]+)"', history)]
    assert "Download evidence pack of ISO27001:A.5.30" in history and "for this period" in history
    assert "for the last 31 days" in signed.get("/history", params={"control": "SOC2:A1.2"}).text
    assert "pack" not in re.sub(r"<style.*?</style>", "", signed.get("/history").text, flags=re.S).lower()
    answer = signed.get(link.removeprefix("/drillbook"))
    assert answer.status_code == 200, answer.text
    pack = tmp_path / "from-history.zip"
    pack.write_bytes(answer.content)
    report = verify_pack(pack, public_key=key[1])
    assert report.ok and report.records == 1 and report.manifest["control"] == "ISO27001:A.5.30"


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({}, "control is required"),
        ({"control": "   "}, "control is required"),
        ({"control": "SOC2:A1.2", "since": "last quarter"}, "last quarter"),
        ({"control": "SOC2:A1.2", "since": "2026-03-01", "until": "2026-01-01"}, "is not after"),
        (
            {"control": "SOC2:A1.2", "since": "2024-01-01", "until": "2025-12-31"},
            f"at most {PACK_MAX_DAYS} days",
        ),
        ({"control": "SOC2:CC9.9"}, "not mapped to any enabled drill"),
        ({"control": "X" * 300}, "at most 200 characters"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(signed, private_tmp, params, says):
    answer = signed.get("/pack", params=params)
    assert answer.status_code == 400, answer.text
    assert says in html.unescape(answer.text) and "Traceback" not in answer.text
    assert "content-disposition" not in answer.headers
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize(
    "hostile",
    [
        'SOC2:A1.2"\r\nSet-Cookie: stolen=1',
        'SOC2:A1.2"; filename="evil.sh',
        "../../etc/passwd",
        '<script>alert("x")</script>',
    ],
)
def test_a_hostile_control_reaches_neither_header_nor_page(signed, hostile):
    answer = signed.get("/pack", params={"control": hostile})
    assert answer.status_code == 400
    assert "set-cookie" not in answer.headers and "content-disposition" not in answer.headers
    assert "<script>" not in answer.text and "expected a control id" in html.unescape(answer.text)
    history = signed.get(
        "/history", params={"control": hostile}
    ).text  # the history's pack link carries it escaped
    assert "<script>" not in history and 'class="pack"' in history


def test_the_filename_keeps_only_safe_characters(seeded, key, private_tmp):
    assert (
        pack_filename('a"b\r\nc; x=/..', "2026-01-01", "2026-03-31")
        == "drillbook-a_b_c_x-2026-01-01-2026-03-31.zip"
    )
    cat = catalogue(backup_drill("orders_nightly", controls=("NIST:CP-9(1)",)))
    app, client = _client(seeded, settings=CheckpointSettings(private_key=key[0]), cat=cat)
    with client:
        answer = client.get("/pack", params={"control": "NIST:CP-9(1)", "since": SINCE, "until": UNTIL})
    app.state.pool.close()
    assert answer.status_code == 200, answer.text
    assert (
        answer.headers["content-disposition"]
        == f'attachment; filename="drillbook-NIST_CP-9_1-{SINCE}-{UNTIL}.zip"'
    )


def test_without_a_catalogue_the_pack_is_refused_plainly(seeded):
    app = create_app(dsn_provider=lambda: seeded.reader_dsn, user_dependency=user)
    with TestClient(app) as c:
        answer = c.get("/pack", params={"control": "SOC2:A1.2"}, headers={"Authorization": f"Bearer {TOKEN}"})
        history = c.get(
            "/history", params={"control": "SOC2:A1.2"}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    app.state.pool.close()
    assert answer.status_code == 503 and "DRILLBOOK_CATALOGUE" in answer.text
    assert 'class="pack"' not in history.text


def test_an_unreachable_ledger_is_a_503_without_the_password(private_tmp):
    cat = catalogue(backup_drill("orders_nightly"))
    app = create_app(
        dsn_provider=lambda: "host=127.0.0.1 port=9 user=x password=hunter2-secret dbname=l",
        user_dependency=user,
        catalogue=lambda: cat,
        pack_settings=lambda: CheckpointSettings(),
    )
    with TestClient(app) as c:
        answer = c.get("/pack", params={"control": "SOC2:A1.2"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert (
        answer.status_code == 503 and "hunter2-secret" not in answer.text and "Traceback" not in answer.text
    )
    assert list(private_tmp.iterdir()) == []
