"""drillbook: scheduled disaster-recovery drills with a tamper-evident evidence ledger."""
__version__ = "0.1.0"
