"""Run the ``barman`` command for one server: as which OS user, with what environment, how much of its answer.

Rules this module enforces:
- Barman refuses to run as any user but its config's ``barman_user``: as root
  it runs as ``os_user`` of the catalogue or else that ``barman_user``
  (default ``barman``, the Debian package's user), with a bare environment and
  no supplementary groups, so the tool never sees the drill's secrets;
- an answer is untrusted input: one larger than ``MAX_OUTPUT``, a failing
  command or a ``-f json`` answer that is not an object keyed by the server
  is a ``PhysicalSourceError`` naming the command (its output through
  ``redact``), never a traceback.
"""

from __future__ import annotations

import configparser
import json
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from drillbook.drills.backup_restore.lifetime import run_in_group
from drillbook.drills.backup_restore.physical.source import SAFE_NAME_RE, PhysicalSourceError, require_str
from drillbook.safety.redact import redact

TOOL = "barman"
COMMAND_TIMEOUT_S = 120.0
MAX_OUTPUT = 8 * 1024 * 1024  # a list-backups answer of thousands of backups is a few MB at most
BACKUP_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}$")


def _bare_env(user: pwd.struct_passwd | None) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "HOME": user.pw_dir if user else "/",
    }


class BarmanCommand:
    """The ``barman`` command of one server of a Barman configuration (see the module docstring)."""

    def __init__(
        self,
        *,
        server: str,
        config: str,
        os_user: str | None = None,
        env: Mapping[str, str] | None = None,
        barman_bin: str | None = None,
    ) -> None:
        # Barman reads no secret from the environment (conninfo is in its config, passwords in the
        # barman user's ~/.pgpass): ``env`` is accepted for the seam and never passed to it
        del env
        self.server = require_str(server, tool=TOOL, key="server", pattern=SAFE_NAME_RE)
        self.config = config
        self.os_user = os_user
        self._barman_bin = barman_bin
        self._server_cache: dict[str, Any] | None = None  # show-servers, asked once per drill

    def _user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None  # Barman itself refuses when this user is not its barman_user
        name = self.os_user or self._configured_user()
        try:
            return pwd.getpwnam(name)
        except KeyError:
            raise PhysicalSourceError(
                "RESTORE_FAILED",
                f"barman must run as OS user {name!r} (barman_user of {self.config}), which does not exist",
            ) from None

    def _configured_user(self) -> str:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with open(self.config, encoding="utf-8") as handle:
                parser.read_file(handle)
        except (OSError, UnicodeDecodeError, configparser.Error) as exc:
            raise PhysicalSourceError(
                "BACKUP_MISSING", f"barman config {self.config!r} could not be read: {exc}"
            ) from None
        user = parser.get("barman", "barman_user", fallback="barman").strip()
        if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", user):
            raise PhysicalSourceError(
                "BACKUP_MISSING",
                f"barman config {self.config!r} key 'barman_user': expected an OS user name, got {user[:40]!r}",
            )
        return user

    def _binary(self) -> str:
        found = self._barman_bin or shutil.which("barman", path="/usr/local/bin:/usr/bin:/bin")
        if not found:
            raise PhysicalSourceError(
                "RESTORE_FAILED",
                "the barman command is not installed on this worker (Debian: apt-get install barman)",
            )
        return found

    def _run(
        self,
        *args: str,
        timeout_s: float = COMMAND_TIMEOUT_S,
        code: str = "BACKUP_MISSING",
    ) -> str:
        user = self._user()
        argv = [self._binary(), "-c", self.config, *args]
        try:
            proc = run_in_group(  # barman recover copies with rsync: its children die with the drill too
                argv,
                timeout=timeout_s,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
                env=_bare_env(user),
                cwd="/",
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise PhysicalSourceError(
                code,
                f"barman {args[-1] if args else ''} for server {self.server!r} did not finish within {timeout_s:.0f} s",
            ) from None
        except OSError as exc:
            raise PhysicalSourceError(
                code, f"barman for server {self.server!r} could not be started: {exc}"
            ) from None
        out = proc.stdout[:MAX_OUTPUT].decode("utf-8", errors="replace")
        if proc.returncode != 0:
            tail = (proc.stderr.decode("utf-8", errors="replace").strip() or out.strip())[-800:]
            raise PhysicalSourceError(
                code, redact(f"barman {' '.join(args)} exited {proc.returncode}: {tail}")
            )
        if len(proc.stdout) > MAX_OUTPUT:
            raise PhysicalSourceError(
                code, f"barman {' '.join(args)} answered more than {MAX_OUTPUT} bytes; refusing to parse it"
            )
        return out

    def _json(self, *args: str) -> Any:
        text = self._run("-f", "json", *args)
        try:
            answer = json.loads(text)
        except ValueError:
            raise PhysicalSourceError(
                "BACKUP_MISSING", redact(f"barman {' '.join(args)}: expected JSON, got {text[:120]!r}")
            ) from None
        if not isinstance(answer, dict) or self.server not in answer:
            raise PhysicalSourceError(
                "BACKUP_MISSING",
                f"barman {' '.join(args)}: expected an object keyed by server {self.server!r}, got {str(answer)[:120]!r}",
            )
        return answer[self.server]
