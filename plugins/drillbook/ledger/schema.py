"""The ledger's schema and its migrations; the database itself keeps evidence append-only.

Rules this module enforces:
- the schema is created and migrated only by ``apply_migrations`` (``drillbook
  ledger init``), idempotently: each migration runs once, in order, inside one
  transaction holding an advisory lock, and is recorded in
  ``drillbook_schema_version``; a database migrated by a newer drillbook is
  refused rather than guessed at;
- ``drillbook_evidence`` refuses UPDATE, DELETE and TRUNCATE with triggers that
  raise, for every role including the owner. Only a superuser who disables the
  triggers (``ALTER TABLE ... DISABLE TRIGGER`` or
  ``session_replication_role = replica``) can change a row, and the hash chain
  makes that visible to ``drillbook evidence verify``;
- ``seq`` is assigned as tail + 1 under the chain lock, not by a sequence: a
  sequence burns numbers on rolled-back inserts, and then a gap would no
  longer prove a deletion. ``prev_hash`` is UNIQUE, so even a writer that
  skipped the lock could not fork the chain. From version 2 the database
  itself sets ``seq``, ``prev_hash``, ``recorded_at`` (``clock_timestamp()``)
  and ``hash`` in a BEFORE INSERT trigger (``drillbook.ledger.seal``), so a
  writer role cannot choose them;
- one 'drill' record per (dag_id, run_id, task_id, map_index), one
  'notification' per attempt (…, try_number), one watchdog/digest record per
  (…, kind, drill): unique partial indexes make racing retries harmless.
"""

from __future__ import annotations

from typing import Any

from drillbook.errors import LedgerError
from drillbook.ledger import seal

TABLE = "drillbook_evidence"
VERSION_TABLE = "drillbook_schema_version"
_MIGRATION_LOCK = 0x6472696C6C626B  # "drillbk": one init at a time per database
CHAIN_LOCK = seal.CHAIN_LOCK  # "drillcn": one append at a time per ledger database
CHECKPOINT_TABLE = seal.CHECKPOINT_TABLE

_V1 = f"""
CREATE TABLE {TABLE} (
    seq          bigint      PRIMARY KEY CHECK (seq >= 1),
    recorded_at  timestamptz NOT NULL,
    record_type  text        NOT NULL CHECK (record_type IN ('drill', 'notification', 'watchdog', 'digest')),
    kind         text        NOT NULL,
    drill        text        NOT NULL,
    target       text        NOT NULL,
    verdict      text        NOT NULL CHECK (verdict IN ('PASS', 'FAIL', 'ERROR', 'SKIPPED')),
    controls     text[]      NOT NULL DEFAULT '{{}}',
    dag_id       text        NOT NULL,
    run_id       text        NOT NULL,
    task_id      text        NOT NULL,
    map_index    integer     NOT NULL DEFAULT -1,
    try_number   integer     NOT NULL DEFAULT 1,
    trigger      text        NOT NULL,
    result       json        NOT NULL,  -- the canonical JSON text that was hashed, kept byte for byte
    prev_hash    text        NOT NULL UNIQUE CHECK (prev_hash ~ '^[0-9a-f]{{64}}$'),
    hash         text        NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{{64}}$')
);
COMMENT ON TABLE {TABLE} IS
    'drillbook evidence ledger: append-only, hash-chained; verify with `drillbook evidence verify`';

CREATE INDEX {TABLE}_recorded_at ON {TABLE} (recorded_at);
CREATE INDEX {TABLE}_controls ON {TABLE} USING gin (controls);
CREATE INDEX {TABLE}_drill_kind_verdict ON {TABLE} (drill, kind, verdict, seq);
CREATE UNIQUE INDEX {TABLE}_drill_once ON {TABLE} (dag_id, run_id, task_id, map_index)
    WHERE record_type = 'drill';
CREATE UNIQUE INDEX {TABLE}_notification_once ON {TABLE} (dag_id, run_id, task_id, map_index, try_number)
    WHERE record_type = 'notification';
CREATE UNIQUE INDEX {TABLE}_event_once ON {TABLE} (record_type, dag_id, run_id, task_id, map_index, kind, drill)
    WHERE record_type IN ('watchdog', 'digest');

CREATE FUNCTION drillbook_evidence_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'drillbook evidence ledger is append-only: TRUNCATE of % refused', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Evidence is never removed; keep the ledger database and its backups.';
    END IF;
    RAISE EXCEPTION 'drillbook evidence ledger is append-only: % of record seq=% refused', TG_OP, OLD.seq
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Evidence is never changed; append a new record instead.';
END;
$$;
CREATE TRIGGER {TABLE}_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION drillbook_evidence_refuse_change();
CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION drillbook_evidence_refuse_change();
"""

# Version 4: the finding codes of each record as a stored generated column, so `evidence list` reads a short
# text instead of parsing every row's result JSON (16x a count(*) of the same rows before). PostgreSQL
# derives it from ``result`` on every insert (no role can write it); it is not hashed and not evidence,
# only a display aid. The function never raises (a result without a findings array gives ''), so it can
# never refuse a record, and its search_path is pinned like the seal's.
_V4 = f"""
CREATE FUNCTION drillbook_finding_codes(result json) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $body$
    SELECT coalesce(string_agg(f.value ->> 'code', ',' ORDER BY f.n), '')
    FROM json_array_elements(CASE WHEN json_typeof(result -> 'findings') = 'array' THEN result -> 'findings' END)
         WITH ORDINALITY AS f(value, n)
    WHERE json_typeof(f.value) = 'object'
$body$;
ALTER TABLE {TABLE} ADD COLUMN finding_codes text GENERATED ALWAYS AS (drillbook_finding_codes(result)) STORED;
"""

# Version 5: the evidence pages page history newest first by keyset (``seq < cursor ORDER BY seq DESC LIMIT n``)
# under a filter on one column; without an index that ends in seq, a rare value (ERROR is one record in
# hundreds) walks the primary key backwards through the whole ledger (0.4 s at 1M records). CONCURRENTLY is
# not allowed inside the migration's transaction; on a large ledger, create these by hand first.
_V5 = f"""
CREATE INDEX IF NOT EXISTS {TABLE}_verdict_seq ON {TABLE} (verdict, seq);
CREATE INDEX IF NOT EXISTS {TABLE}_kind_seq ON {TABLE} (kind, seq);
CREATE INDEX IF NOT EXISTS {TABLE}_drill_seq ON {TABLE} (drill, seq);
"""

# Version 6: the numbers the pages and the digest read per record (measured RTO/RPO and their objectives) as
# stored generated columns, and one covering index over a drill's 'drill' rows by time, so Trends, Coverage
# and the Controls population read an index (index-only scans) instead of every record's ~9 KB result JSON
# (Trends 45 ms -> a few, Controls against a catalogue 720 ms -> see the README). Like v4 the columns are
# derived by PostgreSQL from ``result`` on insert (no role can write them), are not hashed and are not
# evidence. ``drillbook_json_seconds`` and ``drillbook_objective_seconds`` never raise (one
# pinned search_path each, so neither calls the other): anything but a JSON number that fits float8 (at most 200
# digits each side of the point, a two-digit exponent) gives NULL, so a record can never be refused by it.
# The index leads with (drill, recorded_at), not (drill, kind, ...): the pages ask for drills by name and a
# time range, and a kind column between the two made every drill's whole history a filter (the whole
# index read, 0.5 s, instead of the month's entries). After the migration ``Ledger.init_schema`` runs
# VACUUM (ANALYZE): the rewrite clears the visibility map an index-only scan needs. The fixed-width columns
# come first in INCLUDE and the long texts last: a scan decodes each entry only up to the last column it reads.
# The objective follows the digest's rule: ``objectives.rto_seconds`` when the key is present (even as null),
# else ``objectives.rto``. Adding stored columns rewrites the table once (README: how long on 1M records).
_V6 = f"""
CREATE FUNCTION drillbook_json_seconds(value json) RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $body$
    SELECT CASE WHEN json_typeof(value) = 'number'
                 AND value::text ~ '^-?[0-9]{{1,200}}(\\.[0-9]{{1,200}})?([eE][-+]?[0-9]{{1,2}})?$'
           THEN value::text::double precision END
$body$;
CREATE FUNCTION drillbook_objective_seconds(result json, name text) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $body$
    SELECT CASE WHEN json_typeof(v) = 'number'
                 AND v::text ~ '^-?[0-9]{{1,200}}(\\.[0-9]{{1,200}})?([eE][-+]?[0-9]{{1,2}})?$'
           THEN v::text::double precision END
    FROM (SELECT CASE WHEN json_typeof(result -> 'objectives') <> 'object' THEN NULL
                      WHEN result -> 'objectives' -> (name || '_seconds') IS NOT NULL
                      THEN result -> 'objectives' -> (name || '_seconds')
                      ELSE result -> 'objectives' -> name END AS v) o
$body$;
ALTER TABLE {TABLE}
    ADD COLUMN rto_seconds double precision
        GENERATED ALWAYS AS (drillbook_json_seconds(result -> 'measurements' -> 'rto_seconds')) STORED,
    ADD COLUMN rpo_seconds double precision
        GENERATED ALWAYS AS (drillbook_json_seconds(result -> 'measurements' -> 'rpo_seconds')) STORED,
    ADD COLUMN rto_objective double precision
        GENERATED ALWAYS AS (drillbook_objective_seconds(result, 'rto')) STORED,
    ADD COLUMN rpo_objective double precision
        GENERATED ALWAYS AS (drillbook_objective_seconds(result, 'rpo')) STORED;
CREATE INDEX IF NOT EXISTS {TABLE}_drill_period ON {TABLE} (drill, recorded_at)
    INCLUDE (seq, rto_seconds, rpo_seconds, rto_objective, rpo_objective, kind, verdict, controls, dag_id, run_id,
             target)
    WHERE record_type = 'drill';
"""

# (version, description, SQL). Append new migrations; never edit an applied one.
MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "evidence table, indexes, append-only triggers", _V1),
    (2, "database seals each record (seq, prev_hash, recorded_at, hash); signed checkpoints", seal.V2_SQL),
    (3, "the seal runs with a pinned search_path, whatever the writer's session sets", seal.V3_SQL),
    (4, "finding codes as a stored generated column for evidence list", _V4),
    (5, "indexes ending in seq for the evidence pages' keyset paging by verdict, kind and drill", _V5),
    (6, "RTO/RPO and objectives as generated columns; covering index of a drill's rows by time", _V6),
]
LATEST_VERSION = MIGRATIONS[-1][0]
#: The oldest schema drillbook still reads and writes: an upgrade must not stop evidence from being recorded
#: before someone runs `drillbook ledger init`; ``verify`` names what the missing migrations leave open.
MIN_WORKING_VERSION = 2


def current_version(cur: Any) -> int:
    """Highest applied migration, 0 when the ledger was never initialised."""
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,))
    row = cur.fetchone()
    if not row or not row[0]:
        return 0
    cur.execute(f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}")
    row = cur.fetchone()
    return int(row[0]) if row else 0


def apply_migrations(conn: Any) -> list[int]:
    """Bring the schema to ``LATEST_VERSION``; return the versions applied by this call."""
    from psycopg.rows import tuple_row

    applied: list[int] = []
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
            " version integer PRIMARY KEY, description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        have = current_version(cur)
        if have > LATEST_VERSION:
            raise LedgerError(
                f"ledger schema is at version {have}, newer than this drillbook knows ({LATEST_VERSION}); "
                "upgrade drillbook before writing to this ledger"
            )
        for version, description, sql in MIGRATIONS:
            if version <= have:
                continue
            cur.execute(sql)
            cur.execute(
                f"INSERT INTO {VERSION_TABLE} (version, description) VALUES (%s, %s)", (version, description)
            )
            applied.append(version)
    return applied
