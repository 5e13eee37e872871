"""Certificate drills: one DAG per ``certificates`` entry of the catalogue (endpoints, files, ACM)."""
from drillbook.airflow.factory import build_dags

globals().update(build_dags("certificates"))
