"""Negative drills (fire alarm checks): one DAG per catalogue drill that declares ``negative: {every: ...}``."""

from drillbook.airflow.negative import build_negative_dags

globals().update(build_negative_dags())
