"""How many evidence packs one api-server process builds at once: a pack is seconds of CPU, disk and a
ledger connection, so a user (or a script with a user's token) must not be able to start dozens. The
verify button uses the same gate (one verify at a time per process: a full verify of a large ledger
re-hashes every record).

Rules this module enforces:
- at most ``per_user`` builds per Airflow user and ``total`` builds in all run at the same time in this
  process; a request over either limit is refused at once (never queued: a queued request still holds an
  HTTP connection and a worker thread) with 429 and ``Retry-After``;
- a slot is taken after the request's parameters are checked (a 400 costs no slot) and released only
  when the answer is over: the zip fully sent, the client gone mid-download, or the build failed;
- the limit is per process: an api-server started with ``--workers N`` builds at most N x ``total``
  packs at once (README, Known limits).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from drillbook.errors import DrillbookError

PER_USER = 1
TOTAL = 2
RETRY_AFTER_SECONDS = 10  # a small pack takes a few seconds; a year of a busy control tens of seconds


class PackBusy(DrillbookError):
    """No slot for this pack build now; ``reason`` says whose limit was reached."""

    def __init__(self, reason: str, *, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class PackGate:
    """Counts the pack builds running in this process, per user and in all."""

    per_user: int = PER_USER
    total: int = TOTAL
    retry_after: int = RETRY_AFTER_SECONDS
    # how a refusal names the work, singular and plural ("ledger verify" for the verify button)
    what: str = "evidence pack build"
    whats: str = "evidence pack builds"
    _running: Counter[str] = field(default_factory=Counter, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        if self.per_user < 1 or self.total < 1:
            raise ValueError(
                f"pack limits must be at least 1, got per_user={self.per_user} total={self.total}"
            )

    def acquire(self, user: str) -> Slot:
        """A slot for one build by ``user``, or PackBusy naming the limit reached."""
        with self._lock:
            if self._running[user] >= self.per_user:
                raise PackBusy(
                    f"you already have {self._running[user]} {self.what}(s) running (at most "
                    f"{self.per_user} per user); wait for it to finish, then ask again",
                    retry_after=self.retry_after,
                )
            if sum(self._running.values()) >= self.total:
                raise PackBusy(
                    f"{self.total} {self.whats} are running on this server (at most {self.total} at "
                    "once); try again shortly",
                    retry_after=self.retry_after,
                )
            self._running[user] += 1
        return Slot(self, user)

    def _release(self, user: str) -> None:
        with self._lock:
            self._running[user] -= 1
            if self._running[user] <= 0:
                del self._running[user]

    def running(self) -> int:
        with self._lock:
            return sum(self._running.values())


class Slot:
    """One taken slot; ``release`` is idempotent, so every exit path may call it."""

    def __init__(self, gate: PackGate, user: str) -> None:
        self._gate = gate
        self._user = user
        self._held = True
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
        self._gate._release(self._user)


def user_key(user: object) -> str:
    """The identity a limit is counted by: Airflow's user id (``BaseUser.get_id``), else its text."""
    get_id = getattr(user, "get_id", None)
    if callable(get_id):
        return f"id:{get_id()}"
    get_name = getattr(user, "get_name", None)
    if callable(get_name):
        return f"name:{get_name()}"
    return f"user:{user}"
