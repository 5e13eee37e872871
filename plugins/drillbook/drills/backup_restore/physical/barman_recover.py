"""Recover a Barman backup locally into the scratch cluster's data directory, pausing at the drill's target.

Rules this module enforces:
- Barman only ever runs locally: ``barman recover`` gets ``--no-get-wal`` (the
  WAL recovery needs is copied into ``barman_wal/`` of the data directory and
  ``restore_command`` is a plain ``cp``) and never ``--remote-ssh-command``; a
  ``restore_command`` other than that ``cp`` in the recovered directory is
  refused, so the restored cluster cannot reach back into the repository;
- ``recover`` writes into a private staging directory that user owns (a
  cluster's data directory is 0700 of another user) and the result is moved
  into the data directory and handed to its owner; the staging directory is
  removed whatever happened.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from drillbook.drills.backup_restore.physical import conf_scan
from drillbook.drills.backup_restore.physical.barman_command import BACKUP_ID_RE, TOOL, BarmanCommand
from drillbook.drills.backup_restore.physical.source import (
    BackupSet,
    Latest,
    PhysicalSourceError,
    RestoreInfo,
    Target,
    TargetLsn,
    TargetName,
    TargetTime,
    require_str,
)

# what ``barman recover --no-get-wal`` writes for a local recovery; anything else could reach the repository
LOCAL_RESTORE_COMMAND = "cp barman_wal/%f %p"


class BarmanRecover(BarmanCommand):
    """``barman recover`` of one server's backup (see the module docstring)."""

    def restore(
        self, backup: BackupSet, target: Target, datadir: Path, *, env: Mapping[str, str], timeout_s: float
    ) -> RestoreInfo:
        """``barman recover`` of ``backup`` to ``target`` into ``datadir``, WAL copied locally, recovery pausing at a target.

        ``env`` is not passed to Barman (see ``BarmanCommand.__init__``).
        """
        require_str(backup.label, tool=TOOL, key="backup label", pattern=BACKUP_ID_RE)
        if datadir.exists() and any(datadir.iterdir()):
            raise PhysicalSourceError(
                "RESTORE_FAILED", f"restore target {str(datadir)!r} is not empty; refusing to recover into it"
            )
        if isinstance(target, TargetTime) and target.time < backup.stop_time:
            raise PhysicalSourceError(
                "PITR_TARGET_BEFORE_BACKUP",
                f"target time {target.time.isoformat()} is before the end of barman backup {backup.label!r} "
                f"({backup.stop_time.isoformat()}) of server {self.server!r}",
            )
        recovery = _recovery_settings(target)
        started = time.monotonic()
        user = self._user()
        staging = Path(tempfile.mkdtemp(prefix="drillbook_barman_restore_"))
        try:
            if user is not None:
                os.chown(staging, user.pw_uid, user.pw_gid)
            # the server name and backup id are validated; '--' keeps them from reading as options
            # --target-immediate only for Barman's PITR layout (WAL in barman_wal/, a cp
            # restore_command, recovery.signal) with every archived segment copied: with
            # --target-time Barman copies WAL only up to the first segment archived after the
            # target, which may end before the commit that lets recovery stop there ("recovery
            # ended before configured recovery target was reached"), and without a target it
            # puts WAL in pg_wal for crash recovery. Its target line is replaced below.
            self._run(
                "recover",
                "--no-get-wal",
                "--target-immediate",
                "--",
                self.server,
                backup.label,
                str(staging / "data"),
                timeout_s=timeout_s,
                code="RESTORE_FAILED",
            )
            recovered = staging / "data"
            # None (a symlink, FIFO or oversized file) reads as no settings: its restore_command is refused below
            settings = conf_scan.quoted_settings(recovered / "postgresql.auto.conf") or {}
            restore_command = settings.get("restore_command")
            if restore_command != LOCAL_RESTORE_COMMAND:
                raise PhysicalSourceError(
                    "RESTORE_FAILED",
                    f"barman recover wrote restore_command {str(restore_command)[:120]!r}, expected the local {LOCAL_RESTORE_COMMAND!r}; refusing to start it",
                )
            _set_recovery_target(recovered / "postgresql.auto.conf", recovery)
            settings = {
                k: v
                for k, v in settings.items()
                if not k.startswith(("recovery_target", "recovery_end_command"))
            } | recovery
            _move_into(recovered, datadir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        wanted = {k: v for k, v in settings.items() if k.startswith("recovery_") or k == "restore_command"}
        return RestoreInfo(datadir=datadir, recovery_conf_written=wanted, seconds=time.monotonic() - started)


def _recovery_settings(target: Target) -> dict[str, str]:
    """The recovery_target_* settings for ``target``; recovery pauses there so RPO can be read before promotion."""
    if isinstance(target, Latest):
        return {}
    if isinstance(target, TargetTime):
        setting = {"recovery_target_time": target.time.isoformat(sep=" ")}
    elif isinstance(target, TargetName):
        setting = {"recovery_target_name": target.name}
    elif isinstance(target, TargetLsn):
        setting = {"recovery_target_lsn": target.lsn}
    else:
        raise PhysicalSourceError("RESTORE_FAILED", f"barman cannot recover to target {target!r}")
    return {**setting, "recovery_target_action": "pause"}


def _set_recovery_target(auto_conf: Path, recovery: Mapping[str, str]) -> None:
    """Replace Barman's recovery_target* lines with the drill's (none for latest: replay the whole archive).

    Barman's ``recovery_end_command = 'rm -fr barman_wal'`` goes too: the scratch cluster runs
    no command hook (cluster_safety.py refuses one), and its whole directory is removed at teardown.
    """
    dropped = ("recovery_target", "recovery_end_command")
    kept = [
        line
        for line in auto_conf.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith(dropped)
    ]
    kept += ["# drillbook: the drill's recovery target"] if recovery else []
    kept += [f"{key} = '{value.replace(chr(39), chr(39) * 2)}'" for key, value in recovery.items()]
    auto_conf.write_text("\n".join(kept) + "\n", encoding="utf-8")


def _move_into(recovered: Path, datadir: Path) -> None:
    """Move the recovered files into ``datadir`` and give them to its owner (mode 0700, as PostgreSQL wants)."""
    datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = datadir.stat()
    for entry in os.scandir(recovered):
        shutil.move(entry.path, datadir / entry.name)
    if os.geteuid() == 0:
        for dirpath, dirnames, filenames in os.walk(datadir):
            os.chown(dirpath, owner.st_uid, owner.st_gid)
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), owner.st_uid, owner.st_gid)
    datadir.chmod(0o700)
