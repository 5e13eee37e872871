"""What auditors read: the population of expected drill runs, controls, coverage, the evidence pack.

``population`` turns schedules into expected occurrences and matches them to runs; ``controls`` and
``coverage`` judge them; ``pack`` writes the signed evidence pack and ``pack_verify`` checks it
offline; ``render_html`` draws the tables and SVG charts that the pages and the pack's static report
share. Importing this package imports neither psycopg nor Airflow.
"""
