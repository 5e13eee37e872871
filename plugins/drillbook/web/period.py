"""The period a page or a pack covers, from its ``since``/``until`` filters.

Rule: no ``since`` means the ``days`` before ``until`` (default: the end of today, UTC), and a
period that does not end after it starts is bad input (``ConfigurationError``: a 400 page).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drillbook.errors import ConfigurationError
from drillbook.ledger.query import Filter


def window(since: str | None, until: str | None, *, days: int) -> tuple[datetime, datetime, str, str]:
    """Return [start, end) and the since/until labels a page shows for them."""
    flt = Filter.build(since=since or None, until=until or None)
    end = flt.until or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
        days=1
    )
    start = flt.since or end - timedelta(days=days)
    if end <= start:
        raise ConfigurationError(f"until {end.date()} is not after since {start.date()}")
    return (
        start,
        end,
        since or start.date().isoformat(),
        until or (end - timedelta(days=1)).date().isoformat(),
    )
