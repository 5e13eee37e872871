"""Barman's answers are untrusted: a stand-in ``barman`` executable answers hostile JSON and recovers hostile files.

Each case must end in a ``PhysicalSourceError`` with a finding code and a message
naming the key, what was expected and what was found, never a traceback, and a
hostile value must never reach a command line or a path.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drillbook.drills.backup_restore.physical.barman import Barman
from drillbook.drills.backup_restore.physical.source import BackupSet, Latest, PhysicalSourceError

GOOD_LIST = {
    "pg": [
        {
            "backup_id": "20261130T230324",
            "end_time_timestamp": "1796079809",
            "size_bytes": 23425982,
            "status": "DONE",
        }
    ]
}
GOOD_SHOW = {
    "pg": {
        "backup_id": "20261130T230324",
        "status": "DONE",
        "postgresql_version": 150020,
        "base_backup_information": {
            "begin_wal": "000000010000000000000002",
            "end_wal": "000000010000000000000002",
            "begin_time": "2026-11-30 23:03:24.095553+00:00",
            "end_time": "2026-11-30 23:03:29.411257+00:00",
            "timeline": 1,
        },
    }
}


@pytest.fixture
def fake(tmp_path_factory) -> Iterator[Path]:
    """A directory with a ``barman`` script answering from files the test writes (readable by the barman user)."""
    root = Path(tempfile.mkdtemp(prefix="drillbook_fake_barman_"))
    root.chmod(0o755)
    script = root / "barman"
    script.write_text(
        "#!/bin/sh\n"
        f'D="{root}"\n'
        'echo "$*" >> "$D/calls"\n'
        'case "$*" in\n'
        '  *list-backups*) cat "$D/list.json";;\n'
        '  *show-backup*latest) if [ -f "$D/latest.json" ]; then cat "$D/latest.json"; else cat "$D/show.json"; fi;;\n'
        '  *show-backup*) cat "$D/show.json";;\n'
        '  *show-servers*) cat "$D/servers.json";;\n'
        '  *recover*) for a; do last="$a"; done; mkdir -p "$last"; cp "$D/auto.conf" "$last/postgresql.auto.conf";;\n'
        "esac\n"
    )
    script.chmod(0o755)
    (root / "list.json").write_text(json.dumps(GOOD_LIST))
    (root / "show.json").write_text(json.dumps(GOOD_SHOW))
    (root / "servers.json").write_text(
        json.dumps({"pg": {"basebackups_directory": str(root / "base"), "wals_directory": str(root)}})
    )
    for name in ("list.json", "show.json", "servers.json"):
        (root / name).chmod(0o644)
    (root / "calls").touch(mode=0o666)
    (root / "calls").chmod(0o666)  # the script runs as the barman user
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def source(fake: Path) -> Barman:
    user = "barman" if os.geteuid() == 0 else None
    return Barman(
        server="pg", config="/nonexistent/barman.conf", os_user=user, barman_bin=str(fake / "barman")
    )


def answer(fake: Path, name: str, body: object) -> None:
    (fake / name).write_text(body if isinstance(body, str) else json.dumps(body))


def test_the_well_formed_answer_is_accepted(fake: Path) -> None:
    backup = source(fake).locate()
    assert (backup.label, backup.start_wal, backup.pg_major, backup.timeline) == (
        "20261130T230324",
        "000000010000000000000002",
        15,
        1,
    )


def test_locate_asks_show_backup_once_when_latest_is_the_chosen_backup(fake: Path) -> None:
    """Each barman start-up costs a second or more: list, servers and ``show-backup latest`` are asked at once."""
    source(fake).locate()
    calls = (fake / "calls").read_text().splitlines()
    shows = [c for c in calls if "show-backup" in c]
    assert len(calls) == 3 and len(shows) == 1 and shows[0].endswith("show-backup pg latest"), calls


def test_a_latest_that_is_not_the_newest_done_backup_is_not_used(fake: Path) -> None:
    """Barman's ``latest`` may be a backup still WAITING_FOR_WALS (or one that finished in between): the backup
    chosen from list-backups (newest DONE) is shown instead, and its answer is the one used."""
    answer(
        fake,
        "latest.json",
        {
            "pg": {
                **GOOD_SHOW["pg"],
                "backup_id": "20261201T000000",
                "status": "WAITING_FOR_WALS",
            }
        },
    )
    (fake / "latest.json").chmod(0o644)
    backup = source(fake).locate()
    assert backup.label == "20261130T230324"
    calls = (fake / "calls").read_text().splitlines()
    assert any(c.endswith("show-backup pg 20261130T230324") for c in calls), calls


@pytest.mark.parametrize(
    ("name", "body", "expected"),
    [
        ("list.json", "Traceback (most recent call last):", "expected JSON"),
        ("list.json", {"other": []}, "keyed by server 'pg'"),
        ("list.json", {"pg": {"not": "a list"}}, "expected a list of backups"),
        (
            "list.json",
            {"pg": [{"status": "FAILED", "backup_id": "20261130T230324"}]},
            "no backup with status DONE",
        ),
        (
            "list.json",
            {"pg": [{**GOOD_LIST["pg"][0], "backup_id": "--remote-ssh-command=touch /tmp/x"}]},
            "backup_id",
        ),
        ("list.json", {"pg": [{**GOOD_LIST["pg"][0], "end_time_timestamp": 1e400}]}, "end_time_timestamp"),
        ("list.json", {"pg": [{**GOOD_LIST["pg"][0], "size_bytes": -1}]}, "size_bytes"),
        (
            "show.json",
            {"pg": {**GOOD_SHOW["pg"], "backup_id": "20261130T000000"}},
            "expected backup '20261130T230324'",
        ),
        (
            "show.json",
            {"pg": {**GOOD_SHOW["pg"], "base_backup_information": None}},
            "base_backup_information",
        ),
        (
            "show.json",
            {
                "pg": {
                    **GOOD_SHOW["pg"],
                    "base_backup_information": {
                        **GOOD_SHOW["pg"]["base_backup_information"],
                        "begin_wal": "../../../etc/passwd",
                    },
                }
            },
            "begin_wal",
        ),
        (
            "show.json",
            {
                "pg": {
                    **GOOD_SHOW["pg"],
                    "base_backup_information": {
                        **GOOD_SHOW["pg"]["base_backup_information"],
                        "end_time": "yesterday",
                    },
                }
            },
            "end_time",
        ),
        (
            "show.json",
            {
                "pg": {
                    **GOOD_SHOW["pg"],
                    "base_backup_information": {
                        **GOOD_SHOW["pg"]["base_backup_information"],
                        "begin_time": "2026-11-30 23:03:24",
                    },
                }
            },
            "with a zone",
        ),
        (
            "show.json",
            {
                "pg": {
                    **GOOD_SHOW["pg"],
                    "base_backup_information": {
                        **GOOD_SHOW["pg"]["base_backup_information"],
                        "timeline": True,
                    },
                }
            },
            "timeline",
        ),
        (
            "show.json",
            {
                "pg": {
                    **GOOD_SHOW["pg"],
                    "base_backup_information": {
                        **GOOD_SHOW["pg"]["base_backup_information"],
                        "end_wal": "000000010000000000000001",
                    },
                }
            },
            "inconsistent backup",
        ),
    ],
)
def test_a_hostile_answer_is_a_clear_error_naming_the_key(
    fake: Path, name: str, body: object, expected: str
) -> None:
    answer(fake, name, body)

    with pytest.raises(PhysicalSourceError) as caught:
        source(fake).locate()

    assert caught.value.code == "BACKUP_MISSING"
    assert expected in caught.value.message


def test_a_wals_directory_that_is_not_a_directory_is_refused(fake: Path) -> None:
    answer(fake, "servers.json", {"pg": {"wals_directory": "relative/../wals"}})
    backup = BackupSet(
        "20261130T230324", datetime.now(UTC), datetime.now(UTC), "0" * 23 + "2", "0" * 23 + "2", 15, None, 1
    )

    with pytest.raises(PhysicalSourceError) as caught:
        list(source(fake).list_archived_wal(backup, None))

    assert "wals_directory 'relative/../wals'" in caught.value.message


def test_a_recovered_restore_command_that_could_reach_the_repository_is_refused(fake: Path) -> None:
    # what a get-wal recovery writes: barman-wal-restore over ssh back into the Barman server
    answer(fake, "auto.conf", "restore_command = 'barman-wal-restore -U barman backup pg %f %p'\n")
    (fake / "auto.conf").chmod(0o644)
    backup = BackupSet(
        "20261130T230324", datetime.now(UTC), datetime.now(UTC), "0" * 23 + "2", "0" * 23 + "2", 15, None, 1
    )
    datadir = fake / "data"

    with pytest.raises(PhysicalSourceError) as caught:
        source(fake).restore(backup, Latest(), datadir, env={}, timeout_s=30)

    assert caught.value.code == "RESTORE_FAILED"
    assert "barman-wal-restore" in caught.value.message and "refusing to start it" in caught.value.message
    assert not datadir.exists() or not any(datadir.iterdir())
