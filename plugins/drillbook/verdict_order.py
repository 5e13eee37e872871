"""One order of verdicts, worst last: a run's verdict is the worst of its records' verdicts.

Rules this module enforces:
- PASS < SKIPPED < FAIL < ERROR, the same in Python (``rank``, ``worst``) and in SQL
  (``RANK_SQL``), so the digest, the watchdog and the evidence pages judge a run alike;
- a value outside the four ranks as ERROR, in both: an unknown verdict never counts as a pass
  (the ledger's CHECK constraint admits only the four, so this is the fail-closed default, not a path).

Imports nothing: the watchdog's DAG file and the CLI's light paths use it.
"""

from __future__ import annotations

from collections.abc import Iterable

VERDICT_RANK = {"PASS": 0, "SKIPPED": 1, "FAIL": 2, "ERROR": 3}
WORST_RANK = 3
RANK_SQL = "CASE verdict WHEN 'PASS' THEN 0 WHEN 'SKIPPED' THEN 1 WHEN 'FAIL' THEN 2 ELSE 3 END"
_VERDICT_OF_RANK = {rank: verdict for verdict, rank in VERDICT_RANK.items()}


def rank(verdict: str) -> int:
    """The rank of ``verdict``; an unknown value ranks as ERROR."""
    return VERDICT_RANK.get(verdict, WORST_RANK)


def worst(verdicts: Iterable[str]) -> str | None:
    """The worst of ``verdicts`` (None when there are none)."""
    return max(verdicts, key=rank, default=None)


def verdict_of_rank(value: int) -> str:
    """The verdict a rank (as ``RANK_SQL`` computes it) stands for; an unknown rank is ERROR."""
    return _VERDICT_OF_RANK.get(int(value), "ERROR")


def rank_sql(column: str) -> str:
    """``RANK_SQL`` over another column name (a trusted identifier of drillbook's own SQL, e.g. ``e.verdict``)."""
    return RANK_SQL.replace("CASE verdict", f"CASE {column}", 1)
