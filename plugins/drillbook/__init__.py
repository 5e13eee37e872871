"""drillbook: scheduled disaster-recovery drills with a tamper-evident evidence ledger.

Importing it changes nothing in the process: the entry points (the CLI's ``main``, the DAG
factories, the demo script) install the log-record redaction and read the settings.
"""

__version__ = "0.1.0"
