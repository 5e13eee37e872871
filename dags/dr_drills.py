"""Drill DAGs of every registered kind, ``dr_<kind>__<name>``, and their negative drills, ``dr_negative__<name>``.

One file, so the catalogue is loaded and drillbook imported once for all of them (Airflow parses each file in
its own process).
"""

from drillbook.airflow.factory import build_all_dags
from drillbook.airflow.negative import build_negative_dags

globals().update(build_all_dags())
globals().update(build_negative_dags())
