"""Where a result came from: Airflow identifiers, or a manual CLI run."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True)
class RunContext:
    """Identifies one attempt of one drill; (dag_id, run_id, task_id, map_index) is the ledger's idempotency key."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    try_number: int = 1
    trigger: str = "scheduled"  # "scheduled", "manual" (UI / CLI trigger), "cli"
    log_url: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_cli(cls, *, kind: str, drill: str) -> RunContext:
        """A manual terminal run: its own unique run id, marked as manual."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        return cls(
            dag_id=f"dr_{kind}__{drill}",
            run_id=f"cli__{stamp}__{uuid.uuid4().hex[:8]}",
            task_id="cli",
            trigger="manual",
        )
