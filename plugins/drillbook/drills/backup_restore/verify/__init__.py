"""The verify ladder of the backup-restore drill: prove that the right data came back.

Rungs, one module each, run in this order on the restored scratch database:
structure (catalog vs the committed reference; no user tables is
``EMPTY_RESTORE``), server (collation and major vs the reference and the
dump), volume (exact row counts vs minimums and vs the last PASS),
semantics (SQL checks from the catalogue), integrity (sequences, materialized
views, amcheck on B-tree indexes) and quality (Great Expectations suites).
Tiers, suppressions and ``reference write --from-backup`` live here too
(``tiers.py``, ``suppress.py``, ``reference_cluster.py``).
``run_ladder`` is the only entry point; see ``ladder.py`` for its rules.
"""

from __future__ import annotations

from drillbook.drills.backup_restore.verify.ladder import run_ladder

__all__ = ["run_ladder"]
