"""The only package that imports Airflow: DAG factories, connection resolution, task glue."""
