"""Alert-path drill: send a labelled canary down each alert path, read it back, measure latency.

Public entry points: ``run_alert_path`` (every path, one DrillResult each) and
``run_path`` (one path; the Airflow task maps over these).
"""

from __future__ import annotations

from typing import Any

__all__ = ["PathClients", "run_alert_path", "run_path"]


def __getattr__(name: str) -> Any:
    # Lazy: the kind's catalogue model (``alert_path.catalogue``) is imported by every catalogue load
    # and must not pull the drill's phases in with it.
    if name in __all__:
        from drillbook.drills.alert_path import drill

        return getattr(drill, name)
    raise AttributeError(name)
