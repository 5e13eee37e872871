"""The watchdog: pages on-call when a drill did not run, never verifies, or went stale (hourly)."""

from drillbook.airflow.watchdog import build_watchdog_dags

globals().update(build_watchdog_dags(which="watchdog"))
