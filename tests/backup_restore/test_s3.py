"""Backups on S3 (moto's server on loopback): newest by LastModified, streamed, digest-checked."""

from __future__ import annotations

import hashlib

import pytest

from tests.backup_restore.conftest import codes, make_drill, serious

BUCKET = "backups"


def _put(s3, key, path, *, sidecar=None, metadata=None):
    with path.open("rb") as fh:
        s3.put_object(Bucket=BUCKET, Key=key, Body=fh, Metadata=metadata or {})
    if sidecar is not None:
        s3.put_object(
            Bucket=BUCKET, Key=key + ".sha256", Body=f"{sidecar}  {key.rsplit('/', 1)[-1]}\n".encode()
        )


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def s3(boto):
    client = boto("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.mark.parametrize("fmt", ["custom", "tar", "plain", "plain.gz"])
def test_s3_format_passes_with_sidecar(fmt, s3, dumps, drill_runner):
    path = dumps[fmt]
    _put(s3, f"shop/{path.name}", path, sidecar=_sha(path))
    drill = make_drill(
        f"s3://{BUCKET}/shop/", backup={"location": f"s3://{BUCKET}/shop/", "connection": "aws_default"}
    )
    result = drill_runner(drill, s3_client=s3)
    assert codes(result) == [], [(f.code, f.message) for f in result.findings]
    assert result.verdict.value == "PASS"
    fetch = next(p for p in result.phases if p.name == "fetch")
    assert "sha256 matches its sidecar" in fetch.detail


def test_s3_metadata_digest_and_newest_by_last_modified(s3, dumps, drill_runner, tmp_path):
    path = dumps["custom"]
    bad = tmp_path / "older.dump"
    bad.write_bytes(b"not a dump")
    _put(s3, "shop/shop-9.dump", bad)  # older, though its name sorts last
    _put(s3, "shop/shop-1.dump", path, metadata={"sha256": _sha(path)})
    drill = make_drill(
        f"s3://{BUCKET}/shop/",
        backup={"location": f"s3://{BUCKET}/shop/", "connection": "aws_default", "pattern": "shop-*.dump"},
    )
    result = drill_runner(drill, s3_client=s3)
    assert result.details["artefact"]["name"] == "shop-1.dump"
    assert codes(result) == []
    assert not list((tmp_path / "work" / "fetch").glob("*")), "the downloaded artefact must be removed"


def test_s3_digest_mismatch(s3, dumps, drill_runner):
    path = dumps["custom"]
    _put(s3, "shop/shop.dump", path, sidecar="0" * 64)
    drill = make_drill(
        f"s3://{BUCKET}/shop/", backup={"location": f"s3://{BUCKET}/shop/", "connection": "aws_default"}
    )
    result = drill_runner(drill, s3_client=s3)
    assert serious(result) == ["FETCH_FAILED"]
    assert result.findings[0].detail["digest_source"] == "sidecar"
    assert result.verdict.value == "FAIL"
    assert not any(p.name == "restore" for p in result.phases)


def test_s3_without_digest_is_unverified_but_green(s3, dumps, drill_runner):
    _put(s3, "shop/shop.dump", dumps["custom"])
    drill = make_drill(
        f"s3://{BUCKET}/shop/", backup={"location": f"s3://{BUCKET}/shop/", "connection": "aws_default"}
    )
    result = drill_runner(drill, s3_client=s3)
    assert codes(result) == ["ARTEFACT_UNVERIFIED"]
    assert result.verdict.value == "PASS"


def test_s3_empty_prefix(s3, drill_runner):
    drill = make_drill(
        f"s3://{BUCKET}/nothing/", backup={"location": f"s3://{BUCKET}/nothing/", "connection": "aws_default"}
    )
    result = drill_runner(drill, s3_client=s3)
    assert codes(result) == ["BACKUP_MISSING"]


def test_live_dump_kept_on_s3(s3, shop, drill_runner):
    drill = make_drill(
        "live",
        source={"connection": "drillbook_source"},
        schedule="@hourly",
        backup={
            "location": "live",
            "keep_live_dumps_in": f"s3://{BUCKET}/live/",
            "connection": "aws_default",
        },
    )
    result = drill_runner(drill, source_dsn=shop.dsn, s3_client=s3)
    assert result.verdict.value == "PASS", [(f.code, f.message) for f in result.findings]
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="live/")["Contents"])
    assert len(keys) == 2 and keys[1] == keys[0] + ".sha256"
    assert result.details["live_dump_kept_at"] == f"s3://{BUCKET}/{keys[0]}"
    head = s3.head_object(Bucket=BUCKET, Key=keys[0])
    assert len(head["Metadata"]["sha256"]) == 64
