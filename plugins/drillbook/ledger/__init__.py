"""The evidence ledger: append-only, hash-chained drill records in PostgreSQL.

``Ledger(dsn)`` writes and reads records (``store``); ``canonical`` defines what
is hashed; ``schema`` creates the table and its append-only guard; ``verify``
walks the chain; ``export`` serves auditors. Importing this package does not
import psycopg.
"""

from drillbook.ledger.records import LedgerRecord, VerifyReport
from drillbook.ledger.store import Ledger

__all__ = ["Ledger", "LedgerRecord", "VerifyReport"]
