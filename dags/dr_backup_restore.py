"""Backup-restore drills: one DAG per ``backup_restore`` entry of the catalogue (restore, verify, measure)."""
from drillbook.airflow.factory import build_dags

globals().update(build_dags("backup_restore"))
