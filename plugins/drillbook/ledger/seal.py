"""The database seals every record: it, not the writer, sets seq, prev_hash, recorded_at and hash.

Rules this module enforces (schema version 2):
- a BEFORE INSERT trigger on ``drillbook_evidence`` takes the chain lock,
  reads the tail and overwrites whatever the writer sent for ``seq`` (tail +
  1), ``prev_hash`` (the tail's hash), ``recorded_at`` (``clock_timestamp()``,
  the server's clock) and ``hash`` (``sha256(prev_hash || canonical text)``,
  computed in SQL by ``drillbook_evidence_text``). A role with only SELECT and
  INSERT therefore cannot backdate a record, choose its place in the chain or
  give it a hash of its own making; it can still append a new, now-dated
  record (docs/ledger.md says what that means);
- ``drillbook_evidence_text`` builds byte for byte the canonical JSON of
  ``drillbook.ledger.canonical.record_text`` (sorted keys, no whitespace,
  PostgreSQL's JSON string escaping equals Python's with ``ensure_ascii=False``,
  ``result`` spliced as its stored text). The store recomputes the hash in
  Python for every insert and rolls back on any difference, so the two
  definitions can never drift apart silently (``insert_sealed`` is that
  insert: idempotency check and insert under the chain lock, then the check);
- ``drillbook_checkpoint`` holds signed checkpoints of the head (see
  ``drillbook.ledger.checkpoint``) and is append-only like the evidence;
- ``guards.guard_problems`` reads the catalogue, not the writer's word: every trigger
  that keeps the ledger append-only or sealed must exist, be enabled, and call
  a function whose source is the one this module installs. ``evidence verify``
  reports each missing, disabled or replaced guard;
- the seal runs with its own ``search_path`` (``pg_catalog``, the ledger's
  schema, ``pg_temp`` last), pinned by migration 3: a trigger otherwise runs
  with the inserting session's settings, and ``pg_temp`` comes first for
  tables, so a writer's temporary table named ``drillbook_evidence`` became
  the "tail" the seal read and let the writer choose ``seq`` and
  ``prev_hash``. ``guards.guard_problems`` reports a seal function without the pin.
"""

from __future__ import annotations

from typing import Any

from drillbook.errors import LedgerError
from drillbook.ledger.canonical import COLUMNS, canonical_json, record_hash

TABLE = "drillbook_evidence"
CHECKPOINT_TABLE = "drillbook_checkpoint"
CHAIN_LOCK = 0x6472696C6C636E  # "drillcn": one append at a time per ledger database

_TEXT_BODY = """
SELECT '{"controls":' || array_to_json(r.controls)::text
    || ',"dag_id":' || to_json(r.dag_id)::text
    || ',"drill":' || to_json(r.drill)::text
    || ',"kind":' || to_json(r.kind)::text
    || ',"map_index":' || r.map_index::text
    || ',"prev_hash":' || to_json(r.prev_hash)::text
    || ',"record_type":' || to_json(r.record_type)::text
    || ',"recorded_at":"' || to_char(r.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"'
    || ',"result":' || r.result::text
    || ',"run_id":' || to_json(r.run_id)::text
    || ',"seq":' || r.seq::text
    || ',"target":' || to_json(r.target)::text
    || ',"task_id":' || to_json(r.task_id)::text
    || ',"trigger":' || to_json(r.trigger)::text
    || ',"try_number":' || r.try_number::text
    || ',"verdict":' || to_json(r.verdict)::text
    || '}'
"""

#: The canonical-text expression alone (over a row aliased ``r``), for queries that stream it: verify.
TEXT_EXPRESSION = _TEXT_BODY.strip().removeprefix("SELECT ")

_SEAL_BODY = f"""
DECLARE
    tail_seq  bigint;
    tail_hash text;
BEGIN
    PERFORM pg_advisory_xact_lock({CHAIN_LOCK});
    SELECT seq, hash INTO tail_seq, tail_hash FROM {TABLE} ORDER BY seq DESC LIMIT 1;
    NEW.seq := coalesce(tail_seq, 0) + 1;
    NEW.prev_hash := coalesce(tail_hash, repeat('0', 64));
    NEW.recorded_at := clock_timestamp();
    NEW.hash := encode(sha256(convert_to(NEW.prev_hash || drillbook_evidence_text(NEW), 'UTF8')), 'hex');
    RETURN NEW;
END;
"""

_REFUSE_BODY = """
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'drillbook evidence ledger is append-only: TRUNCATE of % refused', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Evidence is never removed; keep the ledger database and its backups.';
    END IF;
    RAISE EXCEPTION 'drillbook evidence ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Evidence is never changed; append a new record instead.';
END;
"""

V2_SQL = f"""
DO $$ BEGIN
    IF current_setting('server_encoding') <> 'UTF8' THEN
        RAISE EXCEPTION 'the drillbook ledger needs a UTF8 database, this one is %', current_setting('server_encoding');
    END IF;
END $$;

CREATE FUNCTION drillbook_evidence_text(r {TABLE}) RETURNS text LANGUAGE sql STABLE AS $body${_TEXT_BODY}$body$;
CREATE FUNCTION drillbook_evidence_seal() RETURNS trigger LANGUAGE plpgsql AS $body${_SEAL_BODY}$body$;
CREATE TRIGGER {TABLE}_seal BEFORE INSERT ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION drillbook_evidence_seal();

CREATE TABLE {CHECKPOINT_TABLE} (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq         bigint      NOT NULL CHECK (seq >= 0),
    hash        text        NOT NULL CHECK (hash ~ '^[0-9a-f]{{64}}$'),
    signed_at   text        NOT NULL,  -- the canonical time string that was signed
    stored_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    key_id      text,                  -- NULL: unsigned (no key configured)
    public_key  text,
    signature   text,
    source      text        NOT NULL
);
COMMENT ON TABLE {CHECKPOINT_TABLE} IS
    'drillbook signed checkpoints of the evidence chain head (append-only)';
CREATE INDEX {CHECKPOINT_TABLE}_seq ON {CHECKPOINT_TABLE} (seq);
CREATE FUNCTION drillbook_checkpoint_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $body${_REFUSE_BODY}$body$;
CREATE TRIGGER {CHECKPOINT_TABLE}_no_update_delete BEFORE UPDATE OR DELETE ON {CHECKPOINT_TABLE}
    FOR EACH ROW EXECUTE FUNCTION drillbook_checkpoint_refuse_change();
CREATE TRIGGER {CHECKPOINT_TABLE}_no_truncate BEFORE TRUNCATE ON {CHECKPOINT_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION drillbook_checkpoint_refuse_change();
"""

# Migration 3. A function's SET clause does not change its source, so the v2 sources above still hold.
PINNED_FUNCTIONS = ("drillbook_evidence_seal()", f"drillbook_evidence_text({TABLE})")
V3_SQL = (
    "DO $$ BEGIN\n"
    + "".join(
        f"    EXECUTE format('ALTER FUNCTION %I.{fn} SET search_path = pg_catalog, %I, pg_temp', "
        "current_schema(), current_schema());\n"
        for fn in PINNED_FUNCTIONS
    )
    + "END $$;\n"
)

# trigger name -> (table, function name, source that function must have; None: the body version 1 installed)
GUARDS: dict[str, tuple[str, str, str | None]] = {
    f"{TABLE}_no_update_delete": (TABLE, "drillbook_evidence_refuse_change", None),
    f"{TABLE}_no_truncate": (TABLE, "drillbook_evidence_refuse_change", None),
    f"{TABLE}_seal": (TABLE, "drillbook_evidence_seal", _SEAL_BODY),
    f"{CHECKPOINT_TABLE}_no_update_delete": (
        CHECKPOINT_TABLE,
        "drillbook_checkpoint_refuse_change",
        _REFUSE_BODY,
    ),
    f"{CHECKPOINT_TABLE}_no_truncate": (CHECKPOINT_TABLE, "drillbook_checkpoint_refuse_change", _REFUSE_BODY),
}
FUNCTION_SOURCES = {"drillbook_evidence_text": _TEXT_BODY}


# -- the insert the seal completes ------------------------------------------------------------------
_SEALED = ("seq", "recorded_at", "prev_hash", "hash")  # set by the trigger, whatever the writer sends
_INSERT_COLUMNS = tuple(c for c in COLUMNS if c not in _SEALED)
_INSERT = (
    f"INSERT INTO {TABLE} ({', '.join(_INSERT_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_INSERT_COLUMNS))}) "
    "RETURNING seq, recorded_at, prev_hash, hash, result::text AS result_text"
)


def _as_is(text: str) -> str:
    """``dumps`` for psycopg's Json adapter: the text is already canonical JSON."""
    return text


def insert_sealed(
    conn: Any, fields: dict[str, Any], *, key: str, key_params: list[Any], select: str
) -> tuple[dict[str, Any], bool]:
    """Insert one record (or find the one with the same idempotency key): (row, created).

    The database seals it; drillbook recomputes the hash from what came back and rolls back on any
    difference from the database's, or when the stored result text is not the text that was hashed.
    """
    from psycopg.types.json import Json

    record_type = fields["record_type"]
    text = canonical_json(fields["result"])  # serialised once, outside the lock
    with conn.transaction(), conn.cursor() as cur:
        # The seal trigger takes the same lock; taking it first makes "already recorded?" and the insert atomic.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (CHAIN_LOCK,))
        cur.execute(f"SELECT seq FROM {TABLE} WHERE record_type = %s AND {key}", [record_type, *key_params])
        existing = cur.fetchone()
        if existing is not None:
            cur.execute(f"{select} WHERE seq = %s", (existing["seq"],))
            return cur.fetchone(), False
        cur.execute(
            _INSERT, [Json(text, dumps=_as_is) if c == "result" else fields[c] for c in _INSERT_COLUMNS]
        )
        stored = cur.fetchone()
        fields.update(seq=stored["seq"], recorded_at=stored["recorded_at"], prev_hash=stored["prev_hash"])
        fields["hash"] = record_hash({**fields, "result": text})
        if stored["result_text"] != text or stored["hash"] != fields["hash"]:
            # Rolls the insert back: a record whose stored form differs from its hashed form (or whose
            # database-computed hash differs from drillbook's) would later verify as edited.
            raise LedgerError(
                f"the ledger stored a different form of the {record_type} record of {fields['drill']!r} than "
                "drillbook hashes (or its seal trigger computed another hash); nothing was written "
                "(report this as a drillbook bug)"
            )
    return fields, True
