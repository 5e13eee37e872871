"""remove_tree: a scratch cluster's directory goes, fast, and nothing a link points at goes with it."""

from __future__ import annotations

import os
from pathlib import Path

from drillbook.drills.backup_restore.tree_removal import remove_tree


def _tree(root: Path, dirs: int = 3, files: int = 50) -> None:
    for d in range(dirs):
        sub = root / "base" / str(d)
        sub.mkdir(parents=True)
        for f in range(files):
            (sub / str(f)).write_bytes(b"\0" * 8192)
    (root / "PG_VERSION").write_text("15\n")


def test_removes_a_nested_tree(tmp_path: Path) -> None:
    root = tmp_path / "drillbook-ephemeral-x"
    _tree(root)
    (root / "empty" / "deeper").mkdir(parents=True)
    remove_tree(root)
    assert not os.path.lexists(root)


def test_links_are_removed_as_names_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "precious").write_text("production")
    (outside / "file").write_text("production")
    root = tmp_path / "drillbook-ephemeral-x"
    _tree(root, dirs=1, files=3)
    (root / "base" / "0" / "dirlink").symlink_to(outside / "keep")
    (root / "filelink").symlink_to(outside / "file")
    (root / "toplink").symlink_to(outside)
    remove_tree(root)
    assert not os.path.lexists(root)
    assert (outside / "keep" / "precious").read_text() == "production"
    assert (outside / "file").read_text() == "production"


def test_a_link_given_as_the_tree_is_removed_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("production")
    link = tmp_path / "drillbook-ephemeral-link"
    link.symlink_to(outside)
    remove_tree(link)
    assert not os.path.lexists(link)
    assert (outside / "precious").read_text() == "production"


def test_a_missing_tree_is_not_an_error(tmp_path: Path) -> None:
    remove_tree(tmp_path / "gone")
