"""Codes of the physical backup-restore drills and PITR (pgBackRest, Barman); their area is ``backup_restore``.

The rules every code obeys are in ``drillbook.finding_codes``; ``drillbook.findings`` registers the rows.
"""

from __future__ import annotations

from drillbook.finding_codes import FindingSpec
from drillbook.result import Severity

_S = Severity
SPECS: list[FindingSpec] = [
    FindingSpec(
        "WAL_GAP",
        _S.CRITICAL,
        "A WAL segment needed to recover the backup to its target is missing from the archive",
        "Read the first missing segment in the message; check archive_command failures on the source (pg_stat_archiver) and the repository's retention; take a new full backup: recovery cannot pass the gap.",
        "backup_restore",
    ),
    FindingSpec(
        "PITR_TARGET_UNREACHED",
        _S.CRITICAL,
        "Recovery stopped before the recovery target: the archive does not reach it",
        "Check that WAL up to the target was archived (pg_switch_wal, archive_timeout) and that the target is not in the future; the message names where replay stopped.",
        "backup_restore",
    ),
    FindingSpec(
        "PITR_TARGET_BEFORE_BACKUP",
        _S.CRITICAL,
        "The recovery target is older than the end of the newest backup: that backup cannot recover to it",
        "Keep older backup sets (retention) long enough for the targets you need, or move the target after the backup's end time named in the message.",
        "backup_restore",
    ),
    FindingSpec(
        "PITR_PROOF_FAILED",
        _S.HIGH,
        "The point-in-time proof did not hold: a row that must exist at the target is missing, or one that must not exist is there",
        "Recovery did not stop where it should: read the query and the row count in the message; check the target time's zone and recovery_target_inclusive.",
        "backup_restore",
    ),
    FindingSpec(
        "BACKUP_CORRUPT",
        _S.CRITICAL,
        "A file of the physical backup failed its checksum in the repository: the backup cannot be restored intact",
        "Read the file named in the message; take a new full backup and investigate the repository's storage; `pgbackrest verify` exits 0 even then, so do not rely on it alone.",
        "backup_restore",
    ),
    FindingSpec(
        "HEAP_CORRUPT",
        _S.CRITICAL,
        "amcheck's heap check (verify_heapam) found corrupt table data in the recovered cluster, or a table page could not be read",
        "Read the table, block and message in the detail; the backup (or the source it copied) holds damaged pages: check the source with pg_amcheck --heapallindexed and take a new backup.",
        "backup_restore",
    ),
    FindingSpec(
        "SERVER_BINARIES_MISSING",
        _S.CRITICAL,
        "No PostgreSQL server binaries of the restored data directory's major version were found",
        "Install the server package of the major named in the message (postgresql-<major>) on the worker, or set restore.bin_dir.",
        "backup_restore",
        True,
    ),
    FindingSpec(
        "RECOVERY_FAILED",
        _S.CRITICAL,
        "The restored cluster did not start or its recovery failed",
        "Read the server log lines in the message (restore_command errors, missing WAL, a bad recovery target); the backup cannot be recovered as is.",
        "backup_restore",
    ),
]
