"""The data-quality drill: Great Expectations suites validated inside PostgreSQL.

Import cost: this package imports neither GX nor psycopg at import time; both are
loaded inside the functions that need them.
"""

from drillbook.drills.data_quality.drill import run_data_quality, validate_into

__all__ = ["run_data_quality", "validate_into"]
