"""Drill DAGs of every registered kind: one DAG per enabled catalogue drill, ``dr_<kind>__<name>``."""

from drillbook.airflow.factory import build_all_dags

globals().update(build_all_dags())
