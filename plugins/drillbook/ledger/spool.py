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
- a replay holds an exclusive ``flock`` on the file (``replaying``) and writes
  a ``done`` line after each commit (``mark_done``); the order and why nothing
  is written twice: ``drillbook.ledger.spool_replay``;
- nothing is ever dropped, and nothing blocks forever: a line that does not
  parse (a torn write after a crash) or an entry that can never be appended
  (its result or context no longer validates) is moved, under the lock, to
  ``<spool>.rejected`` (JSON lines with the reason, the line number and the
  raw text, fsync-ed before the spool forgets it) for an auditor, and named
  loudly (``ledger flush``/``ledger status``, ``EVIDENCE_QUARANTINED`` on
  every report while that file exists); the other entries still replay;
- the spool is compacted under the lock once a replay is over: emptied when
  every entry is done, else rewritten with only the pending entries
  (temporary file, fsync, ``rename``, fsync of the directory: a crash leaves
  the old file or the new one, never half of either). A writer that waited
  for the lock on the replaced file sees that its inode is gone and opens
  the new one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

SPOOL_ENV = "DRILLBOOK_SPOOL"
SPOOL_NAME = "evidence-spool.jsonl"
REJECTED_SUFFIX = ".rejected"


def spool_path(path: str | os.PathLike[str]) -> Path:
    """The spool file ``path``, absolute: the entry point passes ``Settings.spool_file`` (setting
    DRILLBOOK_SPOOL, else evidence-spool.jsonl next to the outbox)."""
    # Absolute, resolved against the directory of the run that spools: every message then names the file
    # exactly, and a `ledger flush` started elsewhere says which (other) file it found empty.
    if not str(path):
        raise ValueError("no spool path given: the entry point passes Settings.spool_file")
    return Path(path).absolute()


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
        return {
            "ledger": self.ledger,
            "record_type": self.record_type,
            "ctx": self.ctx,
            "result": self.result,
        }


@dataclass
class SpoolState:
    """What a read of the spool found: entries without a ``done`` line, in order, and unreadable lines."""

    pending: list[SpoolEntry] = field(default_factory=list)
    done: int = 0
    unreadable: list[str] = field(default_factory=list)
    torn: list[tuple[int, bytes]] = field(
        default_factory=list
    )  # (line number, raw line) of each unreadable line
    lines: int = 0  # non-empty lines in the file: more than the pending entries means compaction has work


class EvidenceSpool:
    """A local append-only file of ledger appends that are still owed."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = spool_path(path)

    def __repr__(self) -> str:
        return f"EvidenceSpool({str(self.path)!r})"

    @property
    def rejected_path(self) -> Path:
        return self.path.with_name(self.path.name + REJECTED_SUFFIX)

    def rejected(self) -> int:
        """How many entries wait in the ``.rejected`` file for an auditor (0 when there is none)."""
        try:
            with self.rejected_path.open("rb") as fh:
                return sum(1 for line in fh if line.strip())
        except OSError:
            return 0

    @contextmanager
    def _locked(self) -> Iterator[IO[bytes]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):  # a compaction replaces the file: lock the file the path names now
            created = not self.path.exists()
            fh = self.path.open("a+b")
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = -1
            if current == os.fstat(fh.fileno()).st_ino:
                break
            fh.close()  # closing drops the lock on the replaced file
        else:
            raise OSError(f"evidence spool {self.path} keeps being replaced; cannot lock it")
        try:
            if created:  # make the new directory entry durable too
                _fsync_dir(self.path.parent)
            yield fh
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()

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
            self._write(
                fh,
                {
                    "op": "record",
                    "id": entry.id,
                    "spooled_at": entry.spooled_at,
                    "reason": entry.reason,
                    **entry.key(),
                },
            )
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
            session = ReplaySession(fh, _parse(fh, self.path), self)
            session.quarantine_torn()
            yield session
            state = session.state
            if not state.pending:
                if state.lines:
                    fh.truncate(0)  # everything it held is in the ledger (or kept in the .rejected file)
                    fh.flush()
                    os.fsync(fh.fileno())
            elif state.lines > len(state.pending):
                self._rewrite(state.pending)

    def _rewrite(self, pending: list[SpoolEntry]) -> None:
        """Replace the spool by its pending entries only, atomically (called under the lock)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.compact")
        with tmp.open("wb") as out:
            for entry in pending:
                out.write(
                    json.dumps(
                        {
                            "op": "record",
                            "id": entry.id,
                            "spooled_at": entry.spooled_at,
                            "reason": entry.reason,
                            **entry.key(),
                        },
                        ensure_ascii=False,
                    ).encode("utf-8")
                    + b"\n"
                )
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def quarantine(self, rows: list[dict[str, Any]]) -> None:
        """Append rows to the ``.rejected`` file durably (called under the spool's lock)."""
        if not rows:
            return
        created = not self.rejected_path.exists()
        with self.rejected_path.open("ab") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
            out.flush()
            os.fsync(out.fileno())
        if created:
            _fsync_dir(self.rejected_path.parent)


class ReplaySession:
    """The pending entries of a locked spool; ``mark_done`` after each committed append."""

    def __init__(self, fh: IO[bytes], state: SpoolState, spool: EvidenceSpool):
        self._fh = fh
        self.state = state
        self._spool = spool
        self.quarantined: list[str] = []

    def quarantine_torn(self) -> None:
        """Move every unreadable line to the ``.rejected`` file; the spool forgets it when it is compacted."""
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        self._spool.quarantine(
            [
                {
                    "rejected_at": now,
                    "reason": "not a spool entry (a torn write?)",
                    "line": number,
                    "raw": raw.decode("utf-8", errors="backslashreplace"),
                }
                for number, raw in self.state.torn
            ]
        )
        for number, _ in self.state.torn:
            self.quarantined.append(
                f"{self._spool.path}:{number}: not a spool entry (a torn write?); moved to "
                f"{self._spool.rejected_path}"
            )
        self.state.torn = []

    def reject(self, entry: SpoolEntry, reason: str) -> None:
        """Move an entry that can never be appended to the ``.rejected`` file, then mark it so in the spool."""
        self._spool.quarantine(
            [
                {
                    "rejected_at": datetime.now(UTC).isoformat(timespec="microseconds"),
                    "reason": reason,
                    "entry": {
                        "op": "record",
                        "id": entry.id,
                        "spooled_at": entry.spooled_at,
                        "reason": entry.reason,
                        **entry.key(),
                    },
                }
            ]
        )
        EvidenceSpool._write(self._fh, {"op": "rejected", "id": entry.id, "reason": reason})
        self.state.pending = [e for e in self.state.pending if e.id != entry.id]
        self.quarantined.append(
            f"spool entry {entry.id[:12]} ({entry.record_type} of {entry.result.get('drill')!r}) "
            f"cannot be appended: {reason}; moved to {self._spool.rejected_path}"
        )

    def mark_done(self, entry: SpoolEntry, *, seq: int) -> None:
        EvidenceSpool._write(
            self._fh,
            {
                "op": "done",
                "id": entry.id,
                "seq": seq,
                "at": datetime.now(UTC).isoformat(timespec="microseconds"),
            },
        )
        self.state.pending = [e for e in self.state.pending if e.id != entry.id]
        self.state.done += 1


def _parse(fh: IO[bytes], path: Path) -> SpoolState:
    entries: dict[str, SpoolEntry] = {}
    done: set[str] = set()
    state = SpoolState()
    for number, raw in enumerate(fh, 1):
        line = raw.decode("utf-8", errors="replace")
        if not line.strip():
            continue
        state.lines += 1
        try:
            doc = json.loads(line)
            if doc["op"] in ("done", "rejected"):
                done.add(doc["id"])
                continue
            entry = SpoolEntry(
                record_type=doc["record_type"],
                ctx=doc["ctx"],
                result=doc["result"],
                ledger=doc.get("ledger", ""),
                spooled_at=doc.get("spooled_at", ""),
                reason=doc.get("reason", ""),
                id=doc["id"],
            )
        except (ValueError, KeyError, TypeError):
            state.unreadable.append(f"{path}:{number}: not a spool entry (a torn write?)")
            state.torn.append((number, raw.rstrip(b"\n")))
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
