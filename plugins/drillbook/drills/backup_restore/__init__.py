"""The backup-restore drill: restore the newest backup into scratch, prove the data came back, measure RTO/RPO.

Phases, one module each: locate -> fetch -> inspect -> (scratch guard) ->
restore -> verify (the ladder, ``verify/``) -> measure; ``drill.py`` runs them
in order and returns a DrillResult. Nothing here imports Airflow.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_backup_restore"]


def __getattr__(name: str) -> Any:
    # Lazy: importing the package (e.g. the verify sub-package) must not pull every phase in.
    if name == "run_backup_restore":
        from drillbook.drills.backup_restore.drill import run_backup_restore

        return run_backup_restore
    raise AttributeError(name)
