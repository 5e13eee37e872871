"""Drills: pure Python, no Airflow import. Each takes plain clients and DSNs and returns a DrillResult."""
