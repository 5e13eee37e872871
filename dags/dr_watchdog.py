"""The watchdog (``dr_watchdog``, hourly: pages on-call when a drill did not run, never verifies, or went stale) and
the scorecard digests (``dr_digest__daily``, ``dr_digest__weekly``: one per defaults.digest.schedules entry).

Kept apart from dags/dr_drills.py: a catalogue too large to parse within Airflow's timeout must not take the
watchdog with it.
"""

from drillbook.airflow.watchdog import build_watchdog_dags

globals().update(build_watchdog_dags())
