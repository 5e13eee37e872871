"""Data-quality drills: one DAG per ``data_quality`` entry of the catalogue (Great Expectations suites)."""
from drillbook.airflow.factory import build_dags

globals().update(build_dags("data_quality"))
