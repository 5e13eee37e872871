"""The verify ladder of the backup-restore drill: prove that the right data came back.

Rungs, one module each, run in this order on the restored scratch database:
structure (catalog vs the committed reference; no user tables is
``EMPTY_RESTORE``), volume (exact row counts vs minimums and vs the last PASS),
semantics (SQL checks from the catalogue), integrity (sequences, materialized
views, amcheck on B-tree indexes) and quality (Great Expectations suites).
``run_ladder`` is the only entry point; see ``ladder.py`` for its rules.
"""

from __future__ import annotations

from drillbook.drills.backup_restore.verify.ladder import run_ladder

__all__ = ["run_ladder"]
