"""What the ledger hands back: one evidence record, and the verdict of a chain walk.

Rule: a ``LedgerRecord`` is a read-only copy of one stored row (plus
``created``, which says whether this call wrote it or found it already there);
nothing in drillbook changes a record once written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drillbook.result import DrillResult

RECORD_TYPES = ("drill", "notification", "watchdog", "digest")
VERIFY_REASONS = (
    "edited",
    "deleted",
    "reordered",
    "backdated",
    "truncated",
    "rewritten",
    "checkpoint",
    "unguarded",
    "head_missing",
)


@dataclass(frozen=True)
class LedgerRecord:
    """One evidence row: what ran, where it came from, what it found, and its place in the chain."""

    seq: int
    recorded_at: datetime
    record_type: str
    kind: str
    drill: str
    target: str
    verdict: str
    controls: list[str]
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    trigger: str
    result: dict[str, Any]
    prev_hash: str
    hash: str
    created: bool = field(default=False, compare=False)

    @property
    def short_hash(self) -> str:
        return self.hash[:12]

    @property
    def codes(self) -> list[str]:
        """Finding codes of the stored result, in order."""
        return [f.get("code", "?") for f in self.result.get("findings", [])]

    def drill_result(self) -> DrillResult:
        """Rebuild the ``DrillResult`` this record holds."""
        from drillbook.result import DrillResult

        return DrillResult.model_validate(self.result)

    def describe(self) -> str:
        """One line naming the record for people: seq, type, drill, run id."""
        return f"seq={self.seq} ({self.record_type} {self.kind}/{self.drill}, run_id={self.run_id!r})"


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of walking the chain: ``ok`` or the first record that does not match and why."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None  # one of VERIFY_REASONS when not ok
    message: str = ""
    head_hash: str | None = None  # hash of the last record checked (the chain's head when ok)
    head_seq: int | None = None
    notes: tuple[str, ...] = ()  # what else was checked: guards, checkpoint, in words
    #: incremental verify: the seq of the trusted signed checkpoint the walk started from (records up to it
    #: were not re-hashed); None for a full verify from seq 1
    since_seq: int | None = None

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1
