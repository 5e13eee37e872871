"""Find and remove ephemeral clusters whose drill died (SIGKILL, OOM, a lost worker).

Rules this module enforces:
- a cluster is drillbook's only when its directory is named
  ``drillbook-ephemeral-*`` in the temporary directory, is a real directory
  (no symlink) owned by this user or by the OS user clusters run as, and
  holds the ``owner.lock`` file ``EphemeralCluster`` writes; anything else is
  left alone;
- it is left over only when nobody holds the exclusive ``flock`` on that file:
  the running drill holds it for the cluster's whole life and the kernel
  releases it when the process dies, SIGKILL included (no pid guessing, no
  clock); a cluster in use by a concurrent drill is never touched;
- the postmaster is stopped (``pg_ctl stop -m immediate``, as the cluster's
  OS user) only when ``postmaster.pid`` names a live process whose command
  line carries that data directory; then the directory is removed;
- a directory named ``drillbook-removing-*`` is a cluster its drill stopped and
  renamed for removal after it reported (``EphemeralCluster.close(remove_now=False)``);
  one whose remover died is removed with the same checks (owner, lock, no live
  postmaster) but not reported as a killed drill's cluster. Only drillbook makes
  that name: a server can write files, never create a directory.
"""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import tempfile
from pathlib import Path

from drillbook.drills.backup_restore.tree_removal import remove_tree

LOCK_NAME = "owner.lock"
PREFIX = "drillbook-ephemeral-"
#: a stopped cluster whose directory is being removed after its drill reported (see the module docstring)
REMOVING_PREFIX = "drillbook-removing-"


def removing_name(root: Path) -> Path:
    """Where ``close(remove_now=False)`` renames ``root`` (same directory, so the rename is atomic)."""
    return root.with_name(
        REMOVING_PREFIX + root.name[len(PREFIX) :]
        if root.name.startswith(PREFIX)
        else REMOVING_PREFIX + root.name
    )


def hold_lock(root: Path) -> int:
    """Create ``root/owner.lock`` already flock'ed and return its descriptor (keep it open for the cluster's life).

    The file is locked under a temporary name and renamed into place: a reaper in another drill never sees
    ``owner.lock`` unlocked. Created then locked in two steps, a reaper running in between took a brand-new
    cluster for a dead one and removed it under its drill (two drills of one stanza started together:
    ``RESTORE_FAILED``, seen once in tests/backup_restore/physical).
    """
    import secrets

    staging = root / f".{LOCK_NAME}.{secrets.token_hex(4)}"
    fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(staging, root / LOCK_NAME)
    except BaseException:
        os.close(fd)
        raise
    return fd


def postmaster_alive(data: Path) -> bool:
    try:
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return False
    return str(data).encode() in cmdline


def _stop(root: Path, owner_uid: int) -> None:
    data = root / "data"
    if not postmaster_alive(data):
        return
    bindir = None
    try:  # the postmaster's own binary directory: pg_ctl of the same major
        bindir = Path(
            os.readlink(f"/proc/{int((data / 'postmaster.pid').read_text().splitlines()[0])}/exe")
        ).parent
    except (OSError, ValueError):
        return
    pg_ctl = bindir / "pg_ctl"
    kwargs: dict = {} if owner_uid == os.geteuid() else {"user": owner_uid, "group": os.stat(root).st_gid}
    subprocess.run(
        [str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "-t", "60", "stop"],
        capture_output=True,
        timeout=70,
        check=False,
        stdin=subprocess.DEVNULL,
        cwd=str(root),
        env={"PATH": f"{bindir}:/usr/bin:/bin", "LANG": "C", "LC_ALL": "C"},
        **kwargs,
    )


def leftovers(uids: set[int], tmp: str | None = None) -> list[Path]:
    """Directories of ephemeral clusters whose owner is gone (see the module docstring)."""
    found = []
    base = Path(tmp or tempfile.gettempdir())
    for root in sorted([*base.glob(PREFIX + "*"), *base.glob(REMOVING_PREFIX + "*")]):
        try:
            st = os.lstat(root)
            lock = root / LOCK_NAME
            lst = os.lstat(lock)
        except OSError:
            continue
        if (
            not stat.S_ISDIR(st.st_mode)
            or st.st_uid not in uids
            or not stat.S_ISREG(lst.st_mode)
            or lst.st_uid not in uids
        ):
            continue
        try:
            fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # held: a live drill uses it
            continue
        os.close(fd)
        found.append(root)
    return found


def reap(uids: set[int], tmp: str | None = None) -> list[str]:
    """Stop and remove every left-over cluster; return the directories removed."""
    removed = []
    for root in leftovers(uids, tmp):
        try:
            _stop(root, os.stat(root).st_uid)
        except (OSError, subprocess.SubprocessError):
            continue  # still running: leave it for a human rather than remove a live data directory
        if postmaster_alive(root / "data"):
            continue
        remove_tree(root)
        if not root.exists() and not root.name.startswith(REMOVING_PREFIX):
            removed.append(str(root))  # a stopped cluster whose removal was cut short is not a killed drill's
    return removed
