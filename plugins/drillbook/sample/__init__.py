"""Sample data for demos, tests and benchmarks (never imported by DAG files)."""
