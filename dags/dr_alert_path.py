"""Alert-path drills: one DAG per ``alert_path`` entry of the catalogue (a test alert down every path)."""
from drillbook.airflow.factory import build_dags

globals().update(build_dags("alert_path"))
