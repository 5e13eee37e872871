"""The compiled catalogue cache: used when it is ours and well formed, ignored (never trusted) otherwise.

A cache entry is untrusted input: it is validated again by the models and the file
checks run again, and an entry another user could have written is not read at all.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from drillbook.catalogue import compiled, fingerprint, load_catalogue
from drillbook.catalogue.compiled import cache_key, load_compiled_catalogue
from drillbook.errors import CatalogueError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def catalogue_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped catalogue with its references and suites, in a directory of its own; a private cache dir."""
    monkeypatch.setenv("DRILLBOOK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DRILLBOOK_SUITE_CHECK", raising=False)
    compiled._MEMO.clear()
    home = tmp_path / "include"
    shutil.copytree(REPO / "include", home)
    return home / "drills.yaml"


def entry_of(path: Path) -> Path:
    return Path(os.environ["DRILLBOOK_CACHE_DIR"]) / "catalogue" / f"{cache_key(path.read_bytes())}.json"


def rewrite_owner(entry: Path, owner: str) -> None:
    """Edit a cache entry's data (still valid for the models): a hit would show ``owner``."""
    doc = json.loads(entry.read_text())
    doc["data"]["defaults"]["owner"] = owner
    entry.write_text(json.dumps(doc))


def load_fresh(path: Path):
    compiled._MEMO.clear()  # a new parse process
    # the setting as an entry point reads it and passes it down
    return load_compiled_catalogue(path, cache_root=os.environ["DRILLBOOK_CACHE_DIR"])


def test_a_cache_hit_is_the_same_catalogue_as_a_full_load(catalogue_file):
    first = load_fresh(catalogue_file)
    entry = entry_of(catalogue_file)
    assert entry.is_file()
    assert entry.stat().st_mode & 0o777 == 0o600 and entry.parent.stat().st_mode & 0o777 == 0o700
    second = load_fresh(catalogue_file)
    full = load_catalogue(catalogue_file)
    assert second.model_dump() == first.model_dump() == full.model_dump()
    assert second.path == catalogue_file and not second.gx_suites_checked


def test_the_cache_is_used_and_memoised(catalogue_file):
    load_fresh(catalogue_file)
    rewrite_owner(entry_of(catalogue_file), "from-the-cache")  # proves the next load answers from the cache
    hit = load_fresh(catalogue_file)
    assert hit.defaults.owner == "from-the-cache"
    assert (
        load_compiled_catalogue(catalogue_file, cache_root=os.environ["DRILLBOOK_CACHE_DIR"]) is hit
    )  # one parse per process


def test_a_cached_entry_is_validated_again(catalogue_file):
    load_fresh(catalogue_file)
    entry = entry_of(catalogue_file)
    doc = json.loads(entry.read_text())
    doc["data"]["drills"][0]["schedule"] = "every full moon"
    doc["data"]["drills"][0]["surprise"] = "unknown key"
    entry.write_text(json.dumps(doc))
    loaded = load_fresh(catalogue_file)
    assert loaded.drills[0].schedule == "30 3 * * *"  # the file's value, not the cache's


@pytest.mark.parametrize("spoil", ["truncated", "not_json", "wrong_key", "list", "world_writable", "symlink"])
def test_a_spoilt_entry_is_ignored(catalogue_file, tmp_path, spoil):
    load_fresh(catalogue_file)
    entry = entry_of(catalogue_file)
    rewrite_owner(entry, "from-the-cache")
    text = entry.read_text()
    if spoil == "truncated":
        entry.write_text(text[: len(text) // 2])
    elif spoil == "not_json":
        entry.write_bytes(b"\x80\x00 not json")
    elif spoil == "wrong_key":
        entry.write_text(text.replace(entry.stem, "0" * 64))
    elif spoil == "list":
        entry.write_text("[1, 2, 3]")
    elif spoil == "world_writable":
        entry.chmod(0o666)
    elif spoil == "symlink":
        elsewhere = tmp_path / "elsewhere.json"
        elsewhere.write_text(text)
        entry.unlink()
        entry.symlink_to(elsewhere)
    loaded = load_fresh(catalogue_file)
    assert loaded.defaults.owner == "platform-ops"


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_an_entry_owned_by_another_user_is_ignored(catalogue_file):
    load_fresh(catalogue_file)
    entry = entry_of(catalogue_file)
    rewrite_owner(entry, "from-the-cache")
    os.chown(entry, 65534, 65534)
    assert load_fresh(catalogue_file).defaults.owner == "platform-ops"


def test_a_shared_cache_directory_is_not_used(catalogue_file):
    cache = Path(os.environ["DRILLBOOK_CACHE_DIR"]) / "catalogue"
    cache.mkdir(parents=True)
    cache.chmod(0o777)
    load_fresh(catalogue_file)
    assert list(cache.iterdir()) == []  # nothing written where others could swap it


def test_a_hit_runs_the_file_checks_again(catalogue_file):
    load_fresh(catalogue_file)
    (catalogue_file.parent / "references" / "shop.json").unlink()
    with pytest.raises(CatalogueError) as err:
        load_fresh(catalogue_file)
    assert any("references/shop.json" in p and "does not exist" in p for p in err.value.problems)
    assert all(p.startswith(f"{catalogue_file}:") for p in err.value.problems)


def test_a_bad_catalogue_is_reported_with_its_line_and_never_cached(catalogue_file):
    catalogue_file.write_text(
        catalogue_file.read_text().replace('schedule: "30 3 * * *"', 'schedul: "30 3 * * *"')
    )
    with pytest.raises(CatalogueError) as err:
        load_fresh(catalogue_file)
    assert any(":30: drills[0].schedul: unknown key" in p for p in err.value.problems), err.value.problems
    assert not entry_of(catalogue_file).exists()


def test_changed_bytes_or_code_change_the_key(catalogue_file, monkeypatch):
    data = catalogue_file.read_bytes()
    key = cache_key(data)
    assert cache_key(data + b"\n") != key
    import drillbook

    fingerprint.code_fingerprint.cache_clear()
    monkeypatch.setattr(drillbook, "__version__", "99.0.0")
    try:
        assert cache_key(data) != key
    finally:
        monkeypatch.undo()
        fingerprint.code_fingerprint.cache_clear()


# -- the summary the watchdog's DAG file is built from (issue 14: that file no longer loads 1,000 drills) ---------
def summary_of(path: Path):
    from drillbook.catalogue.summary import read_summary

    return read_summary(path, cache_root=os.environ["DRILLBOOK_CACHE_DIR"])


def summary_file(path: Path) -> Path:
    from drillbook.catalogue.summary import summary_key

    return (
        Path(os.environ["DRILLBOOK_CACHE_DIR"])
        / "catalogue"
        / f"summary-{summary_key(path, path.read_bytes())}.json"
    )


def test_a_load_leaves_a_summary_of_the_defaults(catalogue_file):
    assert summary_of(catalogue_file) is None  # nothing loaded yet: nothing stands for the file
    full = load_fresh(catalogue_file)  # a full load (no cache entry yet) writes it
    summary = summary_of(catalogue_file)
    assert summary is not None
    assert summary.path == catalogue_file == full.path
    d, s = full.defaults, summary.defaults
    assert (s.timezone, s.owner, s.retries, s.retry_delay) == (d.timezone, d.owner, d.retries, d.retry_delay)
    assert s.watchdog.schedule == d.watchdog.schedule and list(s.digest.schedules) == d.digest.schedules
    assert summary.owner_of(full.drills[0]) == full.owner_of(full.drills[0])
    mtime = summary_file(catalogue_file).stat().st_mtime_ns
    load_fresh(catalogue_file)  # a cache hit: the same summary, not written again
    assert summary_file(catalogue_file).stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
    "change",
    [
        "reference_gone",
        "suite_edited",
        "suite_gone",
        "catalogue_edited",
        "code_changed",
        "spoilt",
        "tampered",
        "source_outside",
    ],
)
def test_the_summary_is_not_answered_once_anything_it_stands_for_changed(catalogue_file, change, monkeypatch):
    load_fresh(catalogue_file)
    assert summary_of(catalogue_file) is not None
    home = catalogue_file.parent
    if change == "reference_gone":
        (home / "references" / "shop.json").unlink()
    elif change == "suite_edited":  # still valid JSON of the same size: only the stamp tells
        suite = home / "expectations" / "orders.json"
        text = suite.read_text()
        suite.unlink()
        suite.write_text(text)
    elif change == "suite_gone":
        (home / "expectations" / "orders.json").unlink()
    elif change == "catalogue_edited":
        catalogue_file.write_text(catalogue_file.read_text() + "\n")
    elif change == "code_changed":
        import drillbook

        monkeypatch.setattr(drillbook, "__version__", "99.0.0")
    elif change == "spoilt":
        summary_file(catalogue_file).chmod(0o666)
    elif change == "tampered":
        entry = summary_file(catalogue_file)
        doc = json.loads(entry.read_text())
        doc["defaults"]["retries"] = "3"  # a type the models would never have written
        entry.write_text(json.dumps(doc))
    elif change == "source_outside":  # only drillbook's own sources are hashed again
        entry = summary_file(catalogue_file)
        doc = json.loads(entry.read_text())
        doc["code"]["sources"][0][1] = str(catalogue_file)  # absolute: would be read from outside the package
        sources = [tuple(pair) for pair in doc["code"]["sources"]]
        doc["code"]["fingerprint"] = fingerprint.fingerprint_of(
            sources, fingerprint.package_root()
        )  # else consistent
        entry.write_text(json.dumps(doc))
    assert summary_of(catalogue_file) is None


def test_no_summary_stands_for_a_gx_check_or_an_extra_kind(catalogue_file):
    from drillbook.catalogue.summary import read_summary
    from drillbook.drills import registry
    from tests.foundation.kinds.pg_ping.kind import KIND

    load_fresh(catalogue_file)
    cache = os.environ["DRILLBOOK_CACHE_DIR"]
    assert read_summary(catalogue_file, gx_suites=True, cache_root=cache) is None
    registry.register(KIND)
    try:
        assert read_summary(catalogue_file, cache_root=cache) is None
    finally:
        registry.unregister(KIND.name)
    assert read_summary(catalogue_file, cache_root=cache) is not None


def test_a_bad_catalogue_leaves_no_summary(catalogue_file):
    catalogue_file.write_text(
        catalogue_file.read_text().replace("kind: backup_restore", "kind: backup_restor", 1)
    )
    with pytest.raises(CatalogueError):
        load_fresh(catalogue_file)
    assert summary_of(catalogue_file) is None


def test_a_hit_skips_the_file_checks_only_while_the_summary_stands(catalogue_file, monkeypatch):
    from drillbook.catalogue import checks

    load_fresh(catalogue_file)
    ran: list[int] = []
    real = checks.run_checks

    def counting(catalogue):
        ran.append(1)
        return real(catalogue)

    monkeypatch.setattr(checks, "run_checks", counting)
    load_fresh(catalogue_file)
    assert ran == []  # nothing they read changed since they passed
    suite = catalogue_file.parent / "expectations" / "orders.json"
    suite.write_text(suite.read_text())  # the same content, a new stamp
    load_fresh(catalogue_file)
    assert ran == [1]
    load_fresh(catalogue_file)  # the summary was written again after they passed
    assert ran == [1]


def test_a_kind_with_checks_and_no_inputs_leaves_no_summary(catalogue_file, monkeypatch):
    import dataclasses

    from drillbook.drills import registry

    registry.kinds()  # the built-in kinds loaded
    silent = dataclasses.replace(registry._builtin["data_quality"], inputs=None)
    monkeypatch.setitem(registry._builtin, "data_quality", silent)
    load_fresh(catalogue_file)
    load_fresh(catalogue_file)  # a hit too
    assert not summary_file(catalogue_file).exists()
    assert summary_of(catalogue_file) is None
