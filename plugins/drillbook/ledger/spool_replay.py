"""Replay the evidence spool into the ledger it is owed to.

Rules this module enforces:
- replay (``Ledger.flush_spool``: the next append, ``drillbook ledger flush``)
  takes an exclusive ``flock`` on the file, appends the entries in file
  order through the ledger's ordinary idempotent append, and after each
  commit appends a ``done`` line naming the entry's id and seq. A replay
  killed between the commit and the ``done`` line finds the record again by
  its idempotency key the next time and writes nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from drillbook.errors import LedgerError, LedgerUnavailable
from drillbook.safety.redact import redact

if TYPE_CHECKING:
    from drillbook.ledger.records import LedgerRecord
    from drillbook.ledger.spool import EvidenceSpool, SpoolEntry


class UnreplayableEntry(LedgerError):
    """An entry that can never be appended as it stands (its own content is wrong, not the ledger's state)."""


@dataclass
class FlushReport:
    """What a spool replay did: records written (or found already there), entries left, entries that failed."""

    spool: str
    records: list[LedgerRecord] = field(default_factory=list)
    remaining: int = 0
    other_ledgers: int = 0  # entries owed to another ledger (another DSN), left in the spool
    failed: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)  # moved to the .rejected file by this replay


def replay(spool: EvidenceSpool, *, where: str, append: Callable[[SpoolEntry], LedgerRecord]) -> FlushReport:
    """Append every pending entry owed to the ledger at ``where``, in order, marking each done after its commit.

    An unreachable ledger stops the replay (the rest stays pending); any other error on one entry is
    reported and the next entry goes on, so one bad entry cannot block every later write.
    """
    report = FlushReport(spool=str(spool.path))
    if not spool.has_pending():
        return report
    with spool.replaying() as session:
        for entry in [e for e in session.state.pending if e.ledger == where]:
            try:
                record = append(entry)
            except LedgerUnavailable:
                report.quarantined = list(session.quarantined)
                raise
            except UnreplayableEntry as exc:
                session.reject(entry, redact(str(exc)))
                continue
            except Exception as exc:
                report.failed.append(
                    f"spool entry {entry.id[:12]} ({entry.record_type} of "
                    f"{entry.result.get('drill')!r}): {type(exc).__name__}: {redact(str(exc))}"
                )
                continue
            session.mark_done(entry, seq=record.seq)
            report.records.append(record)
        report.remaining = sum(1 for e in session.state.pending if e.ledger == where)
        report.other_ledgers = len(session.state.pending) - report.remaining
        report.quarantined = list(session.quarantined)
    return report
