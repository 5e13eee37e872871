"""Alert-path drill: send a labelled canary down each alert path, read it back, measure latency.

Public entry points: ``run_alert_path`` (every path, one DrillResult each) and
``run_path`` (one path; the Airflow task maps over these).
"""

from drillbook.drills.alert_path.drill import PathClients, run_alert_path, run_path

__all__ = ["PathClients", "run_alert_path", "run_path"]
