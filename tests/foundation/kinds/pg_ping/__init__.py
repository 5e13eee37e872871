"""``pg_ping``: the smallest useful drill kind: can drillbook reach a PostgreSQL connection and run ``SELECT 1``."""
