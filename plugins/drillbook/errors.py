"""The one exception tree of drillbook.

Every error drillbook raises on purpose derives from ``DrillbookError``; a message
says what failed, for which object (``!r``), what was expected versus found, and
what to do next.

    DrillbookError
    ├── CatalogueError            a catalogue file is unreadable or invalid (carries every problem)
    ├── FileProblem               a configuration file cannot be read; also a ValueError (catalogue.reader)
    ├── ConfigurationError        settings or arguments are missing or contradictory
    │   ├── ConnectionNotConfigured  a connection id / DSN the drill needs is not defined
    │   └── SuiteInvalid          an expectation suite is missing or invalid (drills.data_quality.suites)
    ├── LedgerError               the evidence ledger cannot be used
    │   ├── LedgerNotInitialised  the schema is missing: run ``drillbook ledger init``
    │   ├── LedgerUnavailable     the ledger server cannot be reached or went away mid-write
    │   │   └── EvidenceSpooled   ... and the record was kept in the local evidence spool
    │   ├── UnreplayableEntry     a spooled entry can never be appended as it stands (ledger.spool_replay)
    │   └── ChainBroken           verify found a record that does not match the chain
    ├── ScratchUnsafe             the scratch guard refused a destructive statement
    │   └── SourceUnreachable     ... because the source could not be asked who it is (backup_restore.scratch)
    ├── DrillAborted              a drill cannot continue (already turned into a finding)
    ├── NotificationFailed        a report could not be delivered after retries
    ├── ResourceError             a foreign library failed at a resource boundary (resources.boundary)
    │   └── ResourceUnavailable   ... because its server or service could not be reached
    ├── ReferenceFromBackupError  a structure reference could not be built from a backup
    ├── ArchiveProblem            an artefact is not a whole, readable dump (backup_restore.archive)
    ├── FetchBroken               an artefact's transfer broke before it was complete (backup_restore.fetch)
    ├── LiveDumpFailed            a live pg_dump could not be taken (backup_restore.locate)
    ├── EphemeralUnavailable      a throwaway cluster could not be created or started (backup_restore.ephemeral)
    ├── PhysicalSourceError       a physical backup tool could not answer or restore (backup_restore.physical.source)
    ├── ClusterUnsafe             a restored cluster could archive/replicate outward; refused (backup_restore.physical.cluster_safety)
    ├── RecoveryProblem           a restored physical cluster did not start or recover to its target (backup_restore.physical.restored)
    ├── PrefetchCancelled         a concurrent ladder read was cancelled before it finished; also a RuntimeError (backup_restore.verify.prefetch)
    ├── NotAPack                  a file given as an evidence pack is not one; also a ValueError (evidence.pack_verify)
    ├── PackBusy                  too many evidence pack builds running now; answered 429 (web.pack_gate)
    ├── TargetMissing             a data-quality table or query relation does not exist (data_quality.engine)
    ├── Untrusted                 OpenSSL refused a certificate chain (certificates.verify)
    ├── OpenSSLMissing            libcrypto could not be loaded; also a RuntimeError (certificates.openssl_chain)
    ├── HandshakeRefused          a verifying TLS handshake refused the chain; the probe re-fetches it (certificates.probe)
    ├── NameLookupTimeout         an endpoint's name did not resolve before its deadline; also a TimeoutError (certificates.tls_connection)
    └── DrillNotGreen             the drill ran, FAIL/ERROR is recorded; also Airflow's AirflowFailException,
                                  so the task fails without retry (airflow.runtime)

Outside the tree on purpose: ``Interrupted`` (drills.backup_restore.lifetime) is a
``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` in a phase
swallows a stop signal. Exceptions defined outside this module carry the module
they live in; tests/foundation/test_error_tree.py checks that every exception class
drillbook defines derives from ``DrillbookError`` and is drawn here.
"""

from __future__ import annotations


class DrillbookError(Exception):
    """Base class of every error drillbook raises on purpose."""


class CatalogueError(DrillbookError):
    """A catalogue is invalid; ``problems`` lists each as ``file:line: key.path: message``."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        count = len(self.problems)
        head = f"catalogue has {count} problem{'s' if count != 1 else ''}"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class ConfigurationError(DrillbookError):
    """Settings or arguments are missing or contradictory."""


class ConnectionNotConfigured(ConfigurationError):
    """A connection id or DSN that the drill needs is not defined anywhere."""


class LedgerError(DrillbookError):
    """The evidence ledger cannot be read or written."""


class LedgerNotInitialised(LedgerError):
    """The ledger schema does not exist in the target database."""


class LedgerUnavailable(LedgerError):
    """The ledger server cannot be reached, or the connection broke during a write."""


class EvidenceSpooled(LedgerUnavailable):
    """The ledger could not be written; the record waits in the local evidence spool (``spool_path``)."""

    def __init__(self, message: str, *, spool_path: str = "", entry_id: str = ""):
        super().__init__(message)
        self.spool_path = spool_path
        self.entry_id = entry_id


class ChainBroken(LedgerError):
    """A ledger record does not match the hash chain."""


class ScratchUnsafe(DrillbookError):
    """The scratch guard refused to touch a database."""


class DrillAborted(DrillbookError):
    """A drill cannot continue; the reason is already recorded as a finding."""


class NotificationFailed(DrillbookError):
    """A report could not be delivered after retries."""


class ResourceError(DrillbookError):
    """A foreign library (psycopg, botocore, slack_sdk, PyYAML, the OS) failed at a resource boundary."""


class ResourceUnavailable(ResourceError):
    """The server or service behind a resource could not be reached (refused, timed out, DNS)."""


class ReferenceFromBackupError(DrillbookError):
    """A structure reference could not be built from a backup (``drillbook reference --from-backup``); the message says why."""
