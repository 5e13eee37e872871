"""The evidence spool: where a signed-off result waits when the ledger cannot be written.

Rules this module enforces:
- the spool is a local append-only file of JSON lines (``$DRILLBOOK_SPOOL``,
  else ``evidence-spool.jsonl`` next to the Slack outbox). Each line is
  written with one ``write``, flushed and ``fsync``-ed before the writer is
  told "spooled", so a result the process reported as spooled survives a
  crash or power loss;
- an entry holds exactly what the ledger append needs (record type, the run
  context that forms the idempotency key, the result document), the ledger
  it is owed to (``host:port/dbname``: it is replayed into that ledger only)
  and an ``id``: the sha256 of its own canonical JSON;
- replay (``Ledger.flush_spool``: the next append, ``drillbook ledger flush``)
  takes an exclusive ``flock`` on the file, appends the entries in file
  order through the ledger's ordinary idempotent append, and after each
  commit appends a ``done`` line naming the entry's id and seq. A replay
  killed between the commit and the ``done`` line finds the record again by
  its idempotency key the next time and writes nothing twice;
- the file is emptied only under the lock and only when every entry has a
  ``done`` line, i.e. when everything it held is in the ledger;
- a line that does not parse (a torn last line after a crash) is skipped
  and named, never fatal: the other entries still replay.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from drillbook.errors import LedgerUnavailable
from drillbook.redact import redact

if TYPE_CHECKING:
    from drillbook.ledger.records import LedgerRecord

SPOOL_ENV = "DRILLBOOK_SPOOL"
SPOOL_NAME = "evidence-spool.jsonl"


def spool_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The spool file: argument, else $DRILLBOOK_SPOOL, else evidence-spool.jsonl next to the outbox."""
    # Absolute, resolved against the directory of the run that spools: every message then names the file
    # exactly, and a `ledger flush` started elsewhere says which (other) file it found empty.
    if path:
        return Path(path).absolute()
    if os.environ.get(SPOOL_ENV):
        return Path(os.environ[SPOOL_ENV]).absolute()
    # The outbox's rule ($DRILLBOOK_OUTBOX, else var/outbox.jsonl), without importing drillbook.notify
    # (about 0.7 s under load: every Ledger() would pay it).
    return (Path(os.environ.get("DRILLBOOK_OUTBOX") or Path("var") / "outbox.jsonl").parent / SPOOL_NAME).absolute()


def _canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass
class SpoolEntry:
    """One record waiting for the ledger."""

    record_type: str
    ctx: dict[str, Any]
    result: dict[str, Any]
    ledger: str = ""  # host:port/dbname of the ledger it is owed to; replayed only there
    spooled_at: str = ""
    reason: str = ""
    id: str = ""

    def key(self) -> dict[str, Any]:
        return {"ledger": self.ledger, "record_type": self.record_type, "ctx": self.ctx, "result": self.result}


@dataclass
class SpoolState:
    """What a read of the spool found: entries without a ``done`` line, in order, and unreadable lines."""

    pending: list[SpoolEntry] = field(default_factory=list)
    done: int = 0
    unreadable: list[str] = field(default_factory=list)


class EvidenceSpool:
    """A local append-only file of ledger appends that are still owed."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = spool_path(path)

    def __repr__(self) -> str:
        return f"EvidenceSpool({str(self.path)!r})"

    @contextmanager
    def _locked(self) -> Iterator[IO[bytes]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        with self.path.open("a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                if created:  # make the new directory entry durable too
                    _fsync_dir(self.path.parent)
                yield fh
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _write(fh: IO[bytes], doc: dict[str, Any]) -> None:
        end = fh.seek(0, os.SEEK_END)
        line = json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n"
        if end:
            fh.seek(end - 1)
            if fh.read(1) != b"\n":  # a line torn by a crash: start on a line of our own
                line = b"\n" + line
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())

    def append(self, entry: SpoolEntry) -> SpoolEntry:
        """Write one entry durably (fsync) and return it with its id set."""
        entry.spooled_at = entry.spooled_at or datetime.now(UTC).isoformat(timespec="microseconds")
        entry.id = hashlib.sha256(_canonical(entry.key()).encode("utf-8")).hexdigest()
        with self._locked() as fh:
            self._write(fh, {"op": "record", "id": entry.id, "spooled_at": entry.spooled_at, "reason": entry.reason,
                             **entry.key()})
        return entry

    def has_pending(self) -> bool:
        """Cheap test: is there anything in the file at all (replay then reads it properly)."""
        try:
            return self.path.stat().st_size > 0
        except OSError:  # absent, or a path that cannot hold a file: nothing readable waits there
            return False

    def read(self) -> SpoolState:
        """Entries without a ``done`` line, oldest first (no lock: for display)."""
        if not self.path.exists():
            return SpoolState()
        with self.path.open("rb") as fh:
            return _parse(fh, self.path)

    @contextmanager
    def replaying(self) -> Iterator[ReplaySession]:
        """Hold the spool exclusively while its pending entries are replayed."""
        with self._locked() as fh:
            fh.seek(0)
            session = ReplaySession(fh, _parse(fh, self.path))
            yield session
            if not session.state.pending and session.state.done and not session.state.unreadable:
                fh.truncate(0)  # everything it held is in the ledger
                fh.flush()
                os.fsync(fh.fileno())


class ReplaySession:
    """The pending entries of a locked spool; ``mark_done`` after each committed append."""

    def __init__(self, fh: IO[bytes], state: SpoolState):
        self._fh = fh
        self.state = state

    def mark_done(self, entry: SpoolEntry, *, seq: int) -> None:
        EvidenceSpool._write(self._fh, {"op": "done", "id": entry.id, "seq": seq,
                                        "at": datetime.now(UTC).isoformat(timespec="microseconds")})
        self.state.pending = [e for e in self.state.pending if e.id != entry.id]
        self.state.done += 1


@dataclass
class FlushReport:
    """What a spool replay did: records written (or found already there), entries left, entries that failed."""

    spool: str
    records: list[LedgerRecord] = field(default_factory=list)
    remaining: int = 0
    other_ledgers: int = 0  # entries owed to another ledger (another DSN), left in the spool
    failed: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def replay(spool: EvidenceSpool, *, where: str, append: Callable[[SpoolEntry], LedgerRecord]) -> FlushReport:
    """Append every pending entry owed to the ledger at ``where``, in order, marking each done after its commit.

    An unreachable ledger stops the replay (the rest stays pending); any other error on one entry is
    reported and the next entry goes on, so one bad entry cannot block every later write.
    """
    report = FlushReport(spool=str(spool.path))
    if not spool.has_pending():
        return report
    with spool.replaying() as session:
        report.unreadable = list(session.state.unreadable)
        for entry in [e for e in session.state.pending if e.ledger == where]:
            try:
                record = append(entry)
            except LedgerUnavailable:
                raise
            except Exception as exc:
                report.failed.append(f"spool entry {entry.id[:12]} ({entry.record_type} of "
                                     f"{entry.result.get('drill')!r}): {type(exc).__name__}: {redact(str(exc))}")
                continue
            session.mark_done(entry, seq=record.seq)
            report.records.append(record)
        report.remaining = sum(1 for e in session.state.pending if e.ledger == where)
        report.other_ledgers = len(session.state.pending) - report.remaining
    return report


def _parse(fh: IO[bytes], path: Path) -> SpoolState:
    entries: dict[str, SpoolEntry] = {}
    done: set[str] = set()
    state = SpoolState()
    for number, raw in enumerate(fh, 1):
        line = raw.decode("utf-8", errors="replace")
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            if doc["op"] == "done":
                done.add(doc["id"])
                continue
            entry = SpoolEntry(record_type=doc["record_type"], ctx=doc["ctx"], result=doc["result"],
                               ledger=doc.get("ledger", ""), spooled_at=doc.get("spooled_at", ""), reason=doc.get("reason", ""), id=doc["id"])
        except (ValueError, KeyError, TypeError):
            state.unreadable.append(f"{path}:{number}: not a spool entry (a torn write?); skipped")
            continue
        entries.setdefault(entry.id, entry)
    state.pending = [e for e in entries.values() if e.id not in done]
    state.done = len(done)
    return state


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
