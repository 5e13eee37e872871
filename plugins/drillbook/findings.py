"""The registry of finding codes: one code, one meaning, forever.

Rules this module enforces:
- every finding a drill emits is made by ``finding(code, ...)`` from a code
  registered here; an unknown code is a programming error (``KeyError``);
- a code is never reused for a different meaning; retire a code by leaving it
  here with ``retired=True`` rather than deleting it;
- ``blocks_verification`` codes mean "could not verify": they make the verdict
  ERROR, never PASS or FAIL;
- ``docs/findings.md`` is generated from this table (``drillbook findings
  --markdown``) and a test fails when the two differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from drillbook.result import Finding, Severity


@dataclass(frozen=True)
class FindingSpec:
    code: str
    severity: Severity
    title: str
    hint: str
    area: str
    blocks_verification: bool = False
    retired: bool = False


_S = Severity
_SPECS: list[FindingSpec] = [
    # --- any drill -------------------------------------------------------------
    FindingSpec(
        "DRILL_CRASHED",
        _S.CRITICAL,
        "The drill raised an unexpected error",
        "Read the task log for the traceback; fix the cause and re-run the drill.",
        "general",
        True,
    ),
    FindingSpec(
        "NOTHING_CHECKED",
        _S.CRITICAL,
        "The drill finished without running a single check",
        "Configure at least one target or check for this drill; an empty drill proves nothing.",
        "general",
        True,
    ),
    FindingSpec(
        "CONFIG_INVALID",
        _S.CRITICAL,
        "The drill's configuration is invalid",
        "Run `drillbook validate` and fix the catalogue entry it names.",
        "general",
        True,
    ),
    FindingSpec(
        "DRILL_NOT_RUN",
        _S.CRITICAL,
        "Airflow failed the drill's task before the drill could record a result",
        "Read the cause in the message: an API server the worker could not reach, a killed worker or an import error; fix it and re-run the drill.",
        "general",
        True,
    ),
    FindingSpec(
        "CONNECTION_MISSING",
        _S.CRITICAL,
        "A connection the drill needs is not defined",
        "Define the Airflow Connection (or the DRILLBOOK_* environment variable) named in the message.",
        "general",
        True,
    ),
    FindingSpec(
        "NOTIFY_FAILED",
        _S.HIGH,
        "The report could not be delivered to Slack; on-call was not told",
        "Check the Slack connection's token and the bot's channel membership; the evidence row is intact.",
        "notify",
    ),
    FindingSpec(
        "NOTIFY_NOT_CONFIGURED",
        _S.INFO,
        "No Slack connection: the report went to the local outbox only",
        "Define the drillbook_slack connection to deliver reports to Slack.",
        "notify",
    ),
    FindingSpec(
        "NOTIFY_REDELIVERED",
        _S.INFO,
        "A report that was not delivered at the time has now reached Slack",
        "Nothing to do; the NOTIFY_FAILED / NOTIFY_NOT_CONFIGURED row of the original run says why it was late.",
        "notify",
    ),
    FindingSpec(
        "DRILL_MISSED",
        _S.HIGH,
        "A drill produced no result when its schedule said it should have",
        "Check that the DAG is unpaused, the scheduler is healthy and the DAG has no import error.",
        "watchdog",
    ),
    FindingSpec(
        "DRILL_NEVER_VERIFIED",
        _S.HIGH,
        "A drill has only produced ERROR results for longer than the grace period",
        "Fix what stops the drill from running its checks (connection, permissions, tools).",
        "watchdog",
    ),
    FindingSpec(
        "DRILL_STALE",
        _S.HIGH,
        "The newest PASS of a drill is older than its max_unverified",
        "Investigate the failing runs; recovery has not been proven recently.",
        "watchdog",
    ),
    # --- backup-restore --------------------------------------------------------
    FindingSpec(
        "BACKUP_MISSING",
        _S.CRITICAL,
        "No backup was found at the configured location",
        "Check the backup job and the location/prefix in the catalogue.",
        "backup_restore",
    ),
    FindingSpec(
        "BACKUP_STALE",
        _S.HIGH,
        "The newest backup is older than the RPO objective",
        "Check that the backup job still runs on schedule and uploads to this location.",
        "backup_restore",
    ),
    FindingSpec(
        "FETCH_FAILED",
        _S.CRITICAL,
        "The backup artefact could not be fetched intact (size or digest mismatch, or the transfer broke)",
        "A size or digest mismatch: re-upload the backup and its .sha256 sidecar and investigate storage corruption; a broken transfer: check the storage endpoint and network, then re-run.",
        "backup_restore",
    ),
    FindingSpec(
        "ARTEFACT_UNVERIFIED",
        _S.LOW,
        "The backup has no digest to verify it against",
        "Write a <key>.sha256 sidecar or x-amz-meta-sha256 metadata when the backup is taken.",
        "backup_restore",
    ),
    FindingSpec(
        "ARCHIVE_UNREADABLE",
        _S.CRITICAL,
        "The backup is not a readable PostgreSQL dump",
        "Check the backup job's output; the file is empty, corrupt or not a dump.",
        "backup_restore",
    ),
    FindingSpec(
        "ARCHIVE_TRUNCATED",
        _S.CRITICAL,
        "The dump ends early: it was cut off before pg_dump finished",
        "Check free space and the exit status of the backup job; re-take the backup.",
        "backup_restore",
    ),
    FindingSpec(
        "VERSION_MISMATCH",
        _S.CRITICAL,
        "The pg_restore available is older than the archive",
        "Install PostgreSQL client tools at least as new as the dump's pg_dump, or set the bin directory.",
        "backup_restore",
        True,
    ),
    FindingSpec(
        "SCRATCH_UNSAFE",
        _S.CRITICAL,
        "The scratch guard refused to touch the target database",
        "Point the scratch connection at a different server or database than the source; when the message names the scratch registry, grant the privilege it names (docs/backup_restore.md). For a physical drill the restored cluster would archive, replicate or run a command: remove the setting the message names from the backup's postgresql.auto.conf, or the restore_command from the pgBackRest recovery-option.",
        "backup_restore",
        True,
    ),
    FindingSpec(
        "SCRATCH_UNREACHABLE",
        _S.CRITICAL,
        "The scratch PostgreSQL server could not be reached",
        "Check the scratch connection, network and credentials.",
        "backup_restore",
        True,
    ),
    FindingSpec(
        "SOURCE_UNREACHABLE",
        _S.CRITICAL,
        "The source database could not be reached",
        "Check the source connection, network and credentials.",
        "backup_restore",
        True,
    ),
    FindingSpec(
        "LIVE_DUMP_FAILED",
        _S.CRITICAL,
        "The live pg_dump of the source did not complete (timeout, server or disk error)",
        "Read pg_dump's stderr in the detail; check free space in keep_live_dumps_in and raise restore.timeout if the dump needs longer.",
        "backup_restore",
        True,
    ),
    FindingSpec(
        "ROLE_ABSENT",
        _S.MEDIUM,
        "The dump references a role that does not exist on the restore target",
        "Create the role on the recovery server (or restore with --no-owner) and record it in the runbook.",
        "backup_restore",
    ),
    FindingSpec(
        "OWNERSHIP_NOT_RESTORABLE",
        _S.MEDIUM,
        "Objects could not be given to their owning role: the restoring role is not a member of it",
        "Set `restore.no_owner: true` on the drill (pg_restore --no-owner; objects then belong to the scratch role), or grant the scratch role membership in the owning roles; for a plain dump, take it with pg_dump --no-owner.",
        "backup_restore",
    ),
    FindingSpec(
        "EXTENSION_ABSENT",
        _S.HIGH,
        "The dump needs an extension the restore target does not have",
        "Install the extension on the recovery server image.",
        "backup_restore",
    ),
    FindingSpec(
        "RESTORE_ERROR",
        _S.HIGH,
        "The restore reported errors",
        "Read the classified stderr lines in the detail and fix the dump or the target.",
        "backup_restore",
    ),
    FindingSpec(
        "RESTORE_FAILED",
        _S.CRITICAL,
        "The restore tool failed",
        "Read the restore stderr in the detail; the backup cannot be restored as is.",
        "backup_restore",
    ),
    FindingSpec(
        "EXIT_CODE_LIED",
        _S.HIGH,
        "The restore tool exited 0 but wrote errors",
        "Do not trust the exit code alone; the errors in the detail mean data is missing.",
        "backup_restore",
    ),
    FindingSpec(
        "EMPTY_RESTORE",
        _S.CRITICAL,
        "The restored database has no user tables",
        "Check that the backup job dumps the right database.",
        "backup_restore",
    ),
    FindingSpec(
        "STRUCTURE_MISSING",
        _S.HIGH,
        "Objects in the reference are missing from the restored database",
        "Check the dump's scope (--schema/--table) and the restore errors; update the reference if the change was intended.",
        "backup_restore",
    ),
    FindingSpec(
        "STRUCTURE_UNEXPECTED",
        _S.LOW,
        "The restored database has objects that the reference does not list",
        "Run `drillbook reference write` after an intended schema change.",
        "backup_restore",
    ),
    FindingSpec(
        "VOLUME_BELOW_MINIMUM",
        _S.HIGH,
        "A restored table has fewer rows than its configured minimum",
        "Check the backup's scope and the source's data; data is missing from the backup.",
        "backup_restore",
    ),
    FindingSpec(
        "VOLUME_TABLE_MISSING",
        _S.HIGH,
        "A table with a configured minimum is missing from the restore",
        "Check the dump's scope and the restore errors.",
        "backup_restore",
    ),
    FindingSpec(
        "VOLUME_DRIFT",
        _S.HIGH,
        "A table shrank beyond the tolerance since the last good drill",
        "Check whether rows were deleted on the source or the backup is partial.",
        "backup_restore",
    ),
    FindingSpec(
        "SEMANTICS_FAILED",
        _S.HIGH,
        "A semantic SQL check on the restored data did not hold",
        "Read the check's query and the value found; the restored data is not what the business expects.",
        "backup_restore",
    ),
    FindingSpec(
        "SEMANTICS_ERROR",
        _S.CRITICAL,
        "A semantic SQL check could not run on the restored data (SQL error, timeout, permission)",
        "Read the server error in the detail: fix the check's SQL, raise DRILLBOOK_CHECK_TIMEOUT, or grant the scratch role access.",
        "backup_restore",
        True,
    ),
    FindingSpec(
        "SEQUENCE_BEHIND",
        _S.HIGH,
        "A sequence is behind the maximum of its column: new inserts would collide",
        "Dump sequences with their tables (pg_dump does by default) or setval them after restore.",
        "backup_restore",
    ),
    FindingSpec(
        "MATVIEW_UNPOPULATED",
        _S.MEDIUM,
        "A materialized view was restored without data",
        "REFRESH MATERIALIZED VIEW after restore; add it to the recovery runbook.",
        "backup_restore",
    ),
    FindingSpec(
        "INDEX_CORRUPT",
        _S.CRITICAL,
        "amcheck found a corrupt B-tree index",
        "REINDEX the index and investigate the source's storage.",
        "backup_restore",
    ),
    FindingSpec(
        "AMCHECK_UNAVAILABLE",
        _S.CRITICAL,
        "verify.amcheck is true but amcheck cannot run in the scratch database",
        "Install the amcheck extension on the scratch server and let the scratch role create it (superuser or pg_database_owner), or set verify.amcheck: auto.",
        "backup_restore",
        True,
    ),
    FindingSpec(
        "INDEX_UNCHECKED",
        _S.CRITICAL,
        "verify.amcheck is true but amcheck could not check an index (lock or statement timeout, permission)",
        "Read the error in the detail; re-run when nothing holds locks on the scratch database, or raise DRILLBOOK_VERIFY_STATEMENT_TIMEOUT.",
        "backup_restore",
        True,
    ),
    FindingSpec(
        "RTO_EXCEEDED",
        _S.HIGH,
        "The verified restore took longer than the RTO objective",
        "Look at the phase timings: the slowest phase is where to speed recovery up.",
        "backup_restore",
    ),
    FindingSpec(
        "RPO_EXCEEDED",
        _S.HIGH,
        "The newest recoverable data is older than the RPO objective",
        "Back up more often or ship WAL; the data since then would be lost.",
        "backup_restore",
    ),
    FindingSpec(
        "RPO_PROBE_FAILED",
        _S.HIGH,
        "The configured rpo_probe query failed or returned nothing on the restored data",
        "Fix the rpo_probe SQL in the catalogue (it must return one timestamp); RPO fell back to the dump's timestamp.",
        "backup_restore",
    ),
    FindingSpec(
        "SEQUENCE_UNCHECKED",
        _S.MEDIUM,
        "A sequence feeds no column (no OWNED BY, identity or DEFAULT nextval) or only a non-numeric one: its position cannot be checked",
        "Link it to its column (ALTER SEQUENCE ... OWNED BY table.column) or drop it if nothing uses it; otherwise setval it after every restore.",
        "backup_restore",
    ),
    FindingSpec(
        "COLLATION_MISMATCH",
        _S.HIGH,
        "The restored database's collation (provider or locale) differs from the reference's",
        "Create the scratch (and recovery) databases with the source's provider and locale (CREATE DATABASE ... LOCALE_PROVIDER/ICU_LOCALE/LC_COLLATE); text sorts differently otherwise.",
        "backup_restore",
    ),
    FindingSpec(
        "COLLATION_UNVERIFIABLE",
        _S.MEDIUM,
        "The scratch server cannot report its collation version",
        "Use a server built with collation versioning (PostgreSQL 15+, ICU or glibc locales); a library upgrade that reorders text cannot be detected otherwise.",
        "backup_restore",
    ),
    FindingSpec(
        "SERVER_MAJOR_MISMATCH",
        _S.HIGH,
        "The scratch server's PostgreSQL major differs from the dump's source server (high when older, medium when newer)",
        "Restore into a scratch server of production's major version (the recovery server's), so the drill proves the restore you would run.",
        "backup_restore",
    ),
    FindingSpec(
        "PARTIAL_VERIFICATION",
        _S.LOW,
        "The drill verified a fast or sample tier: part of the data was not verified",
        "Run the full tier (verify.tier: full) regularly; a partial PASS does not prove every table.",
        "backup_restore",
    ),
    FindingSpec(
        "SUPPRESSION_UNUSED",
        _S.LOW,
        "A suppression in verify.ignore matched no finding",
        "Remove the rule from verify.ignore if the problem it accepted is fixed, or correct its code/subject.",
        "backup_restore",
    ),
    FindingSpec(
        "DUMP_LEAVES_DATABASE",
        _S.CRITICAL,
        "The dump holds a statement or psql command that would leave the scratch database; it was refused",
        "Read the line and statement in the message. A pg_dump -C or pg_dumpall file restores only with restore.target: ephemeral; anything else (\\!, \\o, COPY ... PROGRAM, ALTER SYSTEM) means the backup was tampered with or hand-made: treat it as hostile.",
        "backup_restore",
        True,
    ),
    FindingSpec(
        "SCRATCH_SIDE_EFFECT",
        _S.HIGH,
        "The drill changed the scratch server outside its scratch database (databases, roles, memberships or tablespaces)",
        "Inspect and remove the objects named in the message by hand (drillbook never drops what it did not create); find how the dump reached past the filter and take the scratch role's CREATEDB/CREATEROLE rights away where possible.",
        "backup_restore",
    ),
    FindingSpec(
        "EPHEMERAL_UNAVAILABLE",
        _S.CRITICAL,
        "The private ephemeral cluster could not be created or started",
        "Read the initdb/pg_ctl output in the message; install PostgreSQL server binaries (initdb, pg_ctl, postgres) of the dump's major version or newer.",
        "backup_restore",
        True,
    ),
    FindingSpec(
        "SCRATCH_REAPED",
        _S.INFO,
        "A scratch database left by an earlier run was dropped",
        "Nothing to do; a killed worker left it behind.",
        "backup_restore",
    ),
    FindingSpec(
        "SCRATCH_NOT_DROPPED",
        _S.LOW,
        "The scratch database could not be dropped after the drill",
        "Nothing to do for the drill's result; the next run of this drill reaps it (or `DROP DATABASE` it by hand). If it repeats, look for sessions of other roles in scratch databases.",
        "backup_restore",
    ),
    FindingSpec(
        "SCRATCH_UNREGISTERED",
        _S.LOW,
        "A database with the scratch prefix is not in drillbook's scratch registry, so it was not dropped",
        "Someone else created it (or forged a marker); check who owns it and drop it by hand if it is disposable.",
        "backup_restore",
    ),
    FindingSpec(
        "DRILL_INTERRUPTED",
        _S.CRITICAL,
        "The drill was stopped by a signal (SIGTERM/SIGINT) before it finished",
        "Find out who stopped it (deploy, OOM killer, operator) and re-run the drill; nothing after the named phase was checked.",
        "general",
        True,
    ),
    # --- physical backups and PITR (pgBackRest, Barman) -------------------------
    FindingSpec(
        "WAL_GAP",
        _S.CRITICAL,
        "A WAL segment needed to recover the backup to its target is missing from the archive",
        "Read the first missing segment in the message; check archive_command failures on the source (pg_stat_archiver) and the repository's retention; take a new full backup: recovery cannot pass the gap.",
        "backup_restore",
    ),
    FindingSpec(
        "PITR_TARGET_UNREACHED",
        _S.CRITICAL,
        "Recovery stopped before the recovery target: the archive does not reach it",
        "Check that WAL up to the target was archived (pg_switch_wal, archive_timeout) and that the target is not in the future; the message names where replay stopped.",
        "backup_restore",
    ),
    FindingSpec(
        "PITR_TARGET_BEFORE_BACKUP",
        _S.CRITICAL,
        "The recovery target is older than the end of the newest backup: that backup cannot recover to it",
        "Keep older backup sets (retention) long enough for the targets you need, or move the target after the backup's end time named in the message.",
        "backup_restore",
    ),
    FindingSpec(
        "PITR_PROOF_FAILED",
        _S.HIGH,
        "The point-in-time proof did not hold: a row that must exist at the target is missing, or one that must not exist is there",
        "Recovery did not stop where it should: read the query and the row count in the message; check the target time's zone and recovery_target_inclusive.",
        "backup_restore",
    ),
    FindingSpec(
        "BACKUP_CORRUPT",
        _S.CRITICAL,
        "A file of the physical backup failed its checksum in the repository: the backup cannot be restored intact",
        "Read the file named in the message; take a new full backup and investigate the repository's storage; `pgbackrest verify` exits 0 even then, so do not rely on it alone.",
        "backup_restore",
    ),
    FindingSpec(
        "HEAP_CORRUPT",
        _S.CRITICAL,
        "amcheck's heap check (verify_heapam) found corrupt table data in the recovered cluster, or a table page could not be read",
        "Read the table, block and message in the detail; the backup (or the source it copied) holds damaged pages: check the source with pg_amcheck --heapallindexed and take a new backup.",
        "backup_restore",
    ),
    FindingSpec(
        "SERVER_BINARIES_MISSING",
        _S.CRITICAL,
        "No PostgreSQL server binaries of the restored data directory's major version were found",
        "Install the server package of the major named in the message (postgresql-<major>) on the worker, or set restore.bin_dir.",
        "backup_restore",
        True,
    ),
    FindingSpec(
        "RECOVERY_FAILED",
        _S.CRITICAL,
        "The restored cluster did not start or its recovery failed",
        "Read the server log lines in the message (restore_command errors, missing WAL, a bad recovery target); the backup cannot be recovered as is.",
        "backup_restore",
    ),
    # --- data quality ----------------------------------------------------------
    FindingSpec(
        "DQ_EXPECTATION_FAILED",
        _S.HIGH,
        "A data-quality expectation failed",
        "Look at the observed value and the unexpected sample; fix the data or the pipeline that loaded it.",
        "data_quality",
    ),
    FindingSpec(
        "DQ_VALIDATION_ERROR",
        _S.CRITICAL,
        "The data-quality validation could not run",
        "Check that the table and columns exist and the suite's arguments are valid.",
        "data_quality",
        True,
    ),
    # --- certificates ----------------------------------------------------------
    FindingSpec(
        "CERT_EXPIRED",
        _S.CRITICAL,
        "A certificate has expired",
        "Renew and deploy the certificate now.",
        "certificates",
    ),
    FindingSpec(
        "CERT_EXPIRING",
        _S.MEDIUM,
        "A certificate expires soon",
        "Renew the certificate before the date shown; check that automatic renewal works.",
        "certificates",
    ),
    FindingSpec(
        "CERT_NOT_YET_VALID",
        _S.HIGH,
        "A certificate is not valid yet",
        "Check the issuing clock and the deployment; clients will reject it until the date shown.",
        "certificates",
    ),
    FindingSpec(
        "CHAIN_UNTRUSTED",
        _S.HIGH,
        "The certificate chain does not verify against the trusted roots",
        "Serve the full chain from a trusted CA, or configure the private CA bundle for this endpoint.",
        "certificates",
    ),
    FindingSpec(
        "CERT_SELF_SIGNED",
        _S.HIGH,
        "The certificate is self-signed",
        "Issue the certificate from a trusted or private CA.",
        "certificates",
    ),
    FindingSpec(
        "HOSTNAME_MISMATCH",
        _S.HIGH,
        "The certificate does not cover the name that was asked for",
        "Re-issue with the name in the SANs, or fix the SNI name in the catalogue.",
        "certificates",
    ),
    FindingSpec(
        "CHAIN_INCOMPLETE",
        _S.HIGH,
        "The server does not send the intermediate certificate",
        "Configure the server to send the full chain (leaf + intermediates).",
        "certificates",
    ),
    FindingSpec(
        "CHAIN_EXPIRES_FIRST",
        _S.MEDIUM,
        "An intermediate certificate expires before the leaf",
        "Replace the intermediate with its current version from the CA.",
        "certificates",
    ),
    FindingSpec(
        "WEAK_KEY",
        _S.HIGH,
        "The certificate's key is too short",
        "Re-issue with RSA >= 2048 bits or EC >= 256 bits.",
        "certificates",
    ),
    FindingSpec(
        "WEAK_SIGNATURE",
        _S.HIGH,
        "The certificate is signed with a broken hash (SHA-1 or MD5)",
        "Re-issue with a SHA-256 (or stronger) signature.",
        "certificates",
    ),
    FindingSpec(
        "TLS_OUTDATED",
        _S.HIGH,
        "The endpoint only negotiates TLS 1.0 or 1.1",
        "Enable TLS 1.2 and 1.3 on the server.",
        "certificates",
    ),
    FindingSpec(
        "ENDPOINT_UNREACHABLE",
        _S.CRITICAL,
        "The endpoint could not be reached",
        "Check the host, port, firewall and that the service is running.",
        "certificates",
        True,
    ),
    FindingSpec(
        "TLS_HANDSHAKE_FAILED",
        _S.CRITICAL,
        "The TLS handshake failed",
        "Check that the port speaks TLS (or the STARTTLS setting) and the server's TLS configuration.",
        "certificates",
        True,
    ),
    FindingSpec(
        "ACM_RENEWAL_INELIGIBLE",
        _S.MEDIUM,
        "An ACM certificate is not eligible for managed renewal",
        "Re-validate the domain or re-import the certificate before it expires.",
        "certificates",
    ),
    FindingSpec(
        "CERT_UNREADABLE",
        _S.CRITICAL,
        "A certificate file could not be read or parsed",
        "Check the path and that the file holds PEM certificates.",
        "certificates",
        True,
    ),
    FindingSpec(
        "ACM_UNAVAILABLE",
        _S.CRITICAL,
        "AWS Certificate Manager could not be queried",
        "Check the AWS connection's credentials and region, and the acm:ListCertificates / acm:DescribeCertificate permissions.",
        "certificates",
        True,
    ),
    FindingSpec(
        "CERT_REVOKED",
        _S.CRITICAL,
        "The certificate has been revoked",
        "Replace it now with a newly issued certificate and find out why it was revoked (the RevocationReason is in the detail); clients that check revocation reject it.",
        "certificates",
    ),
    FindingSpec(
        "ACM_NOT_USABLE",
        _S.HIGH,
        "An ACM certificate is not usable: inactive, its request failed or timed out, or an unknown status",
        "Read the status and FailureReason in the detail; request (and validate) a new certificate, and delete the dead request.",
        "certificates",
    ),
    FindingSpec(
        "CERT_NO_AKI",
        _S.LOW,
        "A certificate has no Authority Key Identifier (profile lint; clients still trust it)",
        "Re-issue with the authorityKeyIdentifier extension (RFC 5280 requires it on every certificate but a self-signed root); strict verifiers refuse certificates without it.",
        "certificates",
    ),
    FindingSpec(
        "CERT_NO_SKI",
        _S.LOW,
        "An issuing CA certificate has no Subject Key Identifier (profile lint)",
        "Re-issue the CA certificate with the subjectKeyIdentifier extension (RFC 5280 4.2.1.2).",
        "certificates",
    ),
    FindingSpec(
        "CERT_NO_EKU",
        _S.LOW,
        "A leaf certificate has no Extended Key Usage (profile lint)",
        "Re-issue with extendedKeyUsage serverAuth (and clientAuth only if it is used as a client certificate).",
        "certificates",
    ),
    FindingSpec(
        "CERT_NO_SAN",
        _S.MEDIUM,
        "A leaf certificate has no Subject Alternative Names: its name is only in the CN, which clients ignore",
        "Re-issue with every host name (and IP address) in the subjectAltName extension.",
        "certificates",
    ),
    FindingSpec(
        "CERT_VALIDITY_TOO_LONG",
        _S.LOW,
        "A leaf certificate is valid for longer than the CA/B rules allow (398 days since 2020-09-01)",
        "Re-issue with a validity of at most 398 days (shorter is better; automate renewal); Apple and Chrome refuse longer publicly-trusted leaves, so only a private CA can issue one.",
        "certificates",
    ),
    # --- alert paths -----------------------------------------------------------
    FindingSpec(
        "ALERT_NOT_DELIVERED",
        _S.CRITICAL,
        "A test alert was sent but never seen at the far end",
        "Check the subscription / channel / receiver behind this path; real alerts are not arriving either.",
        "alert_path",
    ),
    FindingSpec(
        "ALERT_SLOW",
        _S.HIGH,
        "A test alert arrived later than the delivery objective",
        "Check queues and rate limits on the path; alerts are delayed.",
        "alert_path",
    ),
    FindingSpec(
        "ALERT_REJECTED",
        _S.CRITICAL,
        "The alert path refused the test alert",
        "Check the token, permissions and routing of the path named in the detail.",
        "alert_path",
    ),
    FindingSpec(
        "ALERT_PATH_UNREACHABLE",
        _S.CRITICAL,
        "The alert path could not be reached",
        "Check the endpoint URL, DNS and network from the worker.",
        "alert_path",
        True,
    ),
    FindingSpec(
        "ALERT_READBACK_FAILED",
        _S.CRITICAL,
        "The test alert was sent but the drill could not read the far end to confirm it",
        "Check the read-back access named in the detail (Slack channels:history scope, SQS ReceiveMessage, the read-back URL and its credentials).",
        "alert_path",
        True,
    ),
    FindingSpec(
        "ALERT_CLEANUP_FAILED",
        _S.LOW,
        "The test alert was delivered but could not be resolved or deleted",
        "Resolve or delete the canary by hand; check the token's permissions.",
        "alert_path",
    ),
    FindingSpec(
        "ALERT_SUPPRESSED",
        _S.CRITICAL,
        "The test alert was accepted but suppressed: a silence, an inhibit rule, a maintenance window or a snooze stopped the page",
        "Remove or narrow the silence / inhibit rule / maintenance window named in the detail; real alerts matching it page nobody either.",
        "alert_path",
    ),
    FindingSpec(
        "ALERT_UNROUTED",
        _S.CRITICAL,
        "The test alert was routed to a receiver, escalation policy or team that does not page on-call",
        "Fix the route (matchers, labels, continue) or the service's escalation policy / team so alerts like the canary reach the receiver named in the catalogue.",
        "alert_path",
    ),
    FindingSpec(
        "ALERT_LOW_URGENCY",
        _S.CRITICAL,
        "The test alert reached the right escalation policy or team at an urgency that pages nobody (a low-urgency PagerDuty incident, an Opsgenie P5 alert)",
        "Make the PagerDuty service's urgency high (or severity-based with the canary's severity among the high ones) or stop the Opsgenie alert policy lowering it to P5; or give the path the labels (severity, priority) that real paging alerts carry.",
        "alert_path",
    ),
    # --- negative drills (fire alarm checks) ------------------------------------
    FindingSpec(
        "NEGATIVE_DRILL_PASSED",
        _S.INFO,
        "On a deliberately broken input the drill turned red with the expected code and on-call was paged",
        "Nothing to do: the detector and the page path work.",
        "negative",
    ),
    FindingSpec(
        "DETECTOR_BLIND",
        _S.CRITICAL,
        "On a deliberately broken input the drill did not turn red with the expected code, or its page reached nobody",
        "Read the inner verdict and codes in the detail: a drill that stays green on broken input proves nothing when it is green on real input; fix the check or the page route before trusting its PASS results.",
        "negative",
    ),
    # --- evidence ledger -------------------------------------------------------
    FindingSpec(
        "EVIDENCE_SPOOLED",
        _S.MEDIUM,
        "The ledger could not be written: the result was kept in the local evidence spool",
        "Bring the ledger database back; the next run or `drillbook ledger flush` replays the spool in order. Keep the spool file until then.",
        "ledger",
    ),
    FindingSpec(
        "EVIDENCE_QUARANTINED",
        _S.HIGH,
        "Evidence spool entries could not be replayed and were moved to the spool's .rejected file",
        "An auditor reads `<spool>.rejected` (each entry with its reason and raw text), records what is genuine by hand or re-runs the drill, then moves the file away; this finding is on every report of this worker until then.",
        "ledger",
    ),
    FindingSpec(
        "CHECKPOINT_UNSIGNED",
        _S.LOW,
        "The ledger checkpoint was stored unsigned: no signing key is configured",
        "Set DRILLBOOK_CHECKPOINT_KEY (or the drillbook_checkpoint_key connection) to an Ed25519 private key; see docs/ledger.md.",
        "ledger",
    ),
    FindingSpec(
        "LEDGER_TAMPERED",
        _S.CRITICAL,
        "The evidence ledger does not verify: records were edited, removed, backdated or its guards switched off",
        "Run `drillbook evidence verify` and investigate the record it names; restore the ledger from backup or a signed export.",
        "ledger",
    ),
    FindingSpec(
        "LEDGER_UNVERIFIABLE",
        _S.CRITICAL,
        "The evidence ledger could not be verified: verify could not read it or its checkpoints",
        "Read the message (unreachable database, missing grant, unreadable checkpoint copy), fix it and press Verify again or run `drillbook evidence verify`.",
        "ledger",
        True,
    ),
]

REGISTRY: dict[str, FindingSpec] = {}
for _spec in _SPECS:
    if _spec.code in REGISTRY:  # pragma: no cover - guarded by tests
        raise RuntimeError(f"finding code {_spec.code!r} registered twice")
    REGISTRY[_spec.code] = _spec


def spec(code: str) -> FindingSpec:
    """Return the registered spec of ``code``; unknown codes are a programming error."""
    try:
        return REGISTRY[code]
    except KeyError:
        raise KeyError(f"finding code {code!r} is not registered in drillbook.findings") from None


def finding(
    code: str,
    message: str | None = None,
    *,
    severity: Severity | str | None = None,
    hint: str | None = None,
    subject: str | None = None,
    detail: dict | None = None,
) -> Finding:
    """Build a finding from the registry; ``message`` adds the specific facts to the title."""
    s = spec(code)
    return Finding(
        code=code,
        severity=Severity(severity) if severity is not None else s.severity,
        message=message or s.title,
        hint=hint or s.hint,
        subject=subject,
        blocks_verification=s.blocks_verification,
        detail=detail or {},
    )


def markdown_table() -> str:
    """Render the registry as the table in docs/findings.md."""
    lines = [
        "# Finding codes",
        "",
        "Generated from `plugins/drillbook/findings.py` by `drillbook findings --markdown`; "
        "a test fails when this file and the registry differ. A code is never reused for "
        "another meaning. *Blocks verification* means the drill could not verify: the "
        "verdict is ERROR, which pages on-call exactly like FAIL.",
        "",
        "| code | area | default severity | blocks verification | meaning | fix hint |",
        "|---|---|---|---|---|---|",
    ]
    for s in _SPECS:
        blocks = "yes (ERROR)" if s.blocks_verification else ""
        title = s.title + (" *(retired)*" if s.retired else "")
        lines.append(f"| `{s.code}` | {s.area} | {s.severity.value} | {blocks} | {title} | {s.hint} |")
    return "\n".join(lines) + "\n"
