"""The data-quality drill: Great Expectations suites validated inside PostgreSQL.

Import cost: this package imports neither GX nor psycopg at import time; both are
loaded inside the functions that need them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_data_quality", "validate_into"]


def __getattr__(name: str) -> Any:
    # Lazy: the kind's catalogue model (``data_quality.catalogue``) is imported by every catalogue load
    # and must not pull the drill's phases in with it.
    if name in __all__:
        from drillbook.drills.data_quality import drill

        return getattr(drill, name)
    raise AttributeError(name)
