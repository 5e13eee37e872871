"""The evidence pack: written from a real ledger, verified offline; every tampering is named."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime

import pytest
import yaml

from drillbook.evidence.pack import write_pack
from drillbook.evidence.pack_format import FILES, MANIFEST, SIGNATURE, choose_sample, sample_rule
from drillbook.evidence.pack_verify import verify_pack
from drillbook.ledger.checkpoint import CheckpointSettings, generate_key_hex
from drillbook.ledger.store import Ledger

from .conftest import backup_drill, catalogue

START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 21, tzinfo=UTC)


def _key() -> tuple[str, str]:
    return generate_key_hex()


@pytest.fixture
def key():
    return _key()


@pytest.fixture
def filled(ledger_dsn, history):
    """20 expected nightly runs of a SOC2:A1.2 drill: 17 ran (one FAIL), 3 missed; another drill's rows in between."""
    for day in range(1, 21):
        if day in (5, 6, 12):
            continue
        history.add(datetime(2026, 1, day, 3, 33, tzinfo=UTC), verdict="FAIL" if day == 9 else "PASS")
        history.add(
            datetime(2026, 1, day, 6, 1, tzinfo=UTC),
            drill="web_certs",
            kind="certificates",
            target="a.example:443",
            controls=("SOC2:CC6.7",),
        )
    return ledger_dsn


def _pack(dsn, tmp_path, key, *, seed=42, name="pack.zip"):
    settings = CheckpointSettings(private_key=key[0])
    with Ledger(dsn) as ledger:
        ledger.checkpoint(source="test", settings=settings)
        return write_pack(
            ledger,
            catalogue(backup_drill()),
            control="SOC2:A1.2",
            start=START,
            end=END,
            output=tmp_path / name,
            settings=settings,
            seed=seed,
            as_of=END,
        )


def _rewrite(src, dst, change):
    """Copy the zip, passing each member's bytes through ``change(name, data)`` (None drops it)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info, data)
    return dst


def test_a_pack_verifies_offline_and_says_what_it_proves(filled, tmp_path, key):
    result = _pack(filled, tmp_path, key)
    assert (result.population, result.status, result.signed) == (20, "EXCEPTIONS", True)
    report = verify_pack(result.path, public_key=key[1])
    assert report.ok and report.signed and report.trusted_key, report.problems
    assert report.records == 17  # the control's records; the other drill's rows are link rows
    with zipfile.ZipFile(result.path) as zf:
        assert set(zf.namelist()) == {*FILES, MANIFEST, SIGNATURE}
        controls = json.loads(zf.read("controls.json"))
        population = zf.read("population.csv").decode().splitlines()
        chain = json.loads(zf.read("chain.json"))
        html = zf.read("report.html").decode()
    assert (controls["missed"], controls["failed"], controls["status"]) == (3, 1, "EXCEPTIONS")
    assert [e["what"] for e in controls["exceptions"]] == ["MISSED", "MISSED", "FAIL", "MISSED"]
    assert len(population) == 21 and population[5].split(",")[5] == "MISSED"
    assert chain["checkpoints"] and chain["checkpoints"][-1]["signature"]
    assert "<svg" in html and "SOC2:A1.2" in html and "<script" not in html


def test_the_sample_is_reproducible_from_its_seed(filled, tmp_path, key):
    first = _pack(filled, tmp_path, key, seed=7, name="a.zip")
    second = _pack(filled, tmp_path, key, seed=7, name="b.zip")
    assert first.sample == second.sample == choose_sample(20, 25, 7)
    assert len(first.sample) == 20  # a daily control samples 25, or the whole population when smaller
    assert choose_sample(365, 25, 7) == choose_sample(365, 25, 7) != choose_sample(365, 25, 8)
    assert [sample_rule(s)[1] for s in (3600, 86400, 7 * 86400, 30 * 86400, 91 * 86400, 365 * 86400)] == [
        25,
        25,
        10,
        3,
        2,
        1,
    ]


@pytest.mark.parametrize("member", [*FILES, MANIFEST, SIGNATURE])
def test_flipping_one_byte_in_any_file_fails_naming_it(filled, tmp_path, key, member):
    result = _pack(filled, tmp_path, key)

    def flip(name, data):
        if name != member:
            return data
        at = len(data) // 2
        return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]

    report = verify_pack(_rewrite(result.path, tmp_path / "flipped.zip", flip), public_key=key[1])
    assert not report.ok
    named = SIGNATURE if member == SIGNATURE else member
    assert any(named in p for p in report.problems), report.problems


def test_an_edited_record_is_named_by_seq(filled, tmp_path, key):
    result = _pack(filled, tmp_path, key)

    def edit(name, data):
        return data.replace(b'"verdict":"FAIL"', b'"verdict":"PASS"', 1) if name == "records.json" else data

    report = verify_pack(_rewrite(result.path, tmp_path / "edited.zip", edit), public_key=key[1])
    assert any(p.startswith("records.json: its sha256") for p in report.problems)
    assert any("records.json: record seq=" in p and "was edited" in p for p in report.problems), (
        report.problems
    )


def test_dropping_a_record_fails_naming_the_missing_seq(filled, tmp_path, key):
    result = _pack(filled, tmp_path, key)

    def drop(name, data):
        if name != "records.json":
            return data
        lines = data.split(b"\n")
        victim = next(i for i, line in enumerate(lines) if b'"verdict":"FAIL"' in line)
        return b"\n".join(lines[:victim] + lines[victim + 1 :])

    report = verify_pack(_rewrite(result.path, tmp_path / "dropped.zip", drop), public_key=key[1])
    assert any("records.json" in p and "is missing" in p for p in report.problems), report.problems


def test_replacing_the_manifest_without_the_key_fails(filled, tmp_path, key):
    result = _pack(filled, tmp_path, key)
    with zipfile.ZipFile(result.path) as zf:
        manifest = json.loads(zf.read(MANIFEST))
    forged_records = None

    def forge(name, data):
        nonlocal forged_records
        if name == "records.json":
            forged_records = data.replace(b'"verdict":"FAIL"', b'"verdict":"PASS"', 1)
            return forged_records
        return data

    tampered = _rewrite(result.path, tmp_path / "t.zip", forge)
    import hashlib

    manifest["files"]["records.json"]["sha256"] = hashlib.sha256(forged_records).hexdigest()
    body = (json.dumps(manifest, sort_keys=True) + "\n").encode()
    # 1. the manifest rewritten, the old signature kept: the signature no longer matches
    kept = _rewrite(tampered, tmp_path / "kept.zip", lambda n, d: body if n == MANIFEST else d)
    report = verify_pack(kept)
    assert any(p.startswith(f"{SIGNATURE}: the signature does not match") for p in report.problems), (
        report.problems
    )
    # 2. re-signed with another key: caught against the trusted key, and the checkpoints still carry the real key
    other_private, other_public = _key()
    from drillbook.evidence.pack_format import MANIFEST_SIG_DOMAIN
    from drillbook.ledger.checkpoint import load_private_key

    manifest.update(public_key=other_public)
    body = (json.dumps(manifest, sort_keys=True) + "\n").encode()
    signature = load_private_key(other_private).sign(MANIFEST_SIG_DOMAIN + body).hex().encode()
    resigned = _rewrite(
        tampered,
        tmp_path / "resigned.zip",
        lambda n, d: body if n == MANIFEST else signature if n == SIGNATURE else d,
    )
    report = verify_pack(resigned, public_key=key[1])
    assert any("not by the key you trust" in p for p in report.problems), report.problems
    assert any("records.json: record seq=" in p for p in report.problems)
    assert any(
        p.startswith("chain.json:") and "not by the trusted key" in p for p in verify_pack(resigned).problems
    )


def test_cli_pack_then_verify_offline(filled, tmp_path, key, monkeypatch, capsys):
    from drillbook.cli import main

    cat = tmp_path / "drills.yaml"
    cat.write_text(yaml.safe_dump({"defaults": {"watchdog": {"grace": "1h"}}, "drills": [backup_drill()]}))
    (tmp_path / "backups" / "shop").mkdir(parents=True)
    monkeypatch.setenv("DRILLBOOK_CHECKPOINT_KEY", key[0])
    out = tmp_path / "soc2-a12.zip"
    code = main(
        [
            "evidence",
            "pack",
            "--control",
            "SOC2:A1.2",
            "--since",
            "2026-01-01",
            "--until",
            "2026-01-20",
            "-o",
            str(out),
            "--seed",
            "11",
            "--ledger-dsn",
            filled,
            "--catalogue",
            str(cat),
        ]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    assert "seed 11" in text and "status EXCEPTIONS" in text
    for name in ("DRILLBOOK_CHECKPOINT_KEY", "DRILLBOOK_LEDGER_DSN", "DRILLBOOK_CATALOGUE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["evidence", "verify", "--pack", str(out), "--public-key", key[1]]) == 0
    text = capsys.readouterr().out
    assert "this proves:" in text and "this does not prove:" in text and "the key you trusted" in text
    assert main(["evidence", "verify", "--pack", str(cat)]) == 2  # not a zip: bad input, no traceback
    assert "is not an evidence pack" in capsys.readouterr().err
    code = main(
        [
            "evidence",
            "controls",
            "--since",
            "2026-01-01",
            "--until",
            "2026-01-20",
            "--ledger-dsn",
            filled,
            "--catalogue",
            str(cat),
        ]
    )
    text = capsys.readouterr().out
    assert code == 1 and "EXCEPTIONS" in text and "3 of 20 expected runs missed" in text
    assert "2026-01-05 03:30 UTC MISSED nightly" in text and "2026-01-09 03:33 UTC FAIL nightly" in text
    assert (
        main(
            ["evidence", "coverage", "--since", "2026-01-01", "--ledger-dsn", filled, "--catalogue", str(cat)]
        )
        == 0
    )


def test_a_byte_flipped_in_the_zip_itself_is_named_not_a_crash(filled, tmp_path, key):
    result = _pack(filled, tmp_path, key)
    with zipfile.ZipFile(result.path) as zf:
        info = zf.getinfo("records.json")
    data = bytearray(result.path.read_bytes())
    at = (
        info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    )  # inside the compressed records
    data[at] ^= 0xFF
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(data))
    report = verify_pack(damaged, public_key=key[1])
    assert any(p.startswith("records.json") for p in report.problems), report.problems


def test_an_unsigned_pack_is_never_reported_as_verified(filled, tmp_path, capsys):
    from drillbook.cli import main

    with Ledger(filled) as ledger:
        result = write_pack(
            ledger,
            catalogue(backup_drill()),
            control="SOC2:A1.2",
            start=START,
            end=END,
            output=tmp_path / "unsigned.zip",
            settings=CheckpointSettings(),
            seed=1,
            as_of=END,
        )
    assert not result.signed
    report = verify_pack(result.path)
    assert report.ok and report.unsigned
    assert main(["evidence", "verify", "--pack", str(result.path)]) == 2
    assert "INTACT BUT UNSIGNED" in capsys.readouterr().out
