"""The evidence pages served inside Airflow's api-server (see drillbook.web.app)."""
