"""Scorecard digests: dr_digest__daily, dr_digest__weekly (one per defaults.digest.schedules entry)."""

from drillbook.airflow.watchdog import build_watchdog_dags

globals().update(build_watchdog_dags(which="digest"))
