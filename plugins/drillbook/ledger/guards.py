"""Whether the ledger's append-only and seal guards still hold, read from the database catalogue.

Rules this module enforces:
- every trigger in ``seal.GUARDS`` exists, is enabled, and calls the function with exactly the
  source drillbook installed (version 1's refuse body is read from ``schema.MIGRATIONS``);
  anything else is reported as a sentence, never silently accepted;
- the hashing function's source is checked too, and from schema version 3 on the seal's
  ``search_path`` pin; a ledger not migrated yet gets a note (``pin_note``), not a tamper finding.

It sits above ``seal`` and ``schema`` (both of which it reads), so neither imports the other back.
"""

from __future__ import annotations

from typing import Any

from drillbook.ledger.schema import MIGRATIONS
from drillbook.ledger.seal import CHECKPOINT_TABLE, FUNCTION_SOURCES, GUARDS, PINNED_FUNCTIONS, TABLE

_ENABLED = {
    "O": "enabled",
    "A": "enabled (always)",
    "D": "DISABLED",
    "R": "enabled only in replica mode (off otherwise)",
}


def guard_problems(cur: Any) -> list[str]:
    """Every missing, disabled or replaced append-only/seal trigger, as sentences; empty when all hold."""
    cur.execute(
        "SELECT t.tgname, c.relname, t.tgenabled, p.proname, p.prosrc FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid "
        "WHERE NOT t.tgisinternal AND c.relname = ANY(%s) AND c.relnamespace = to_regnamespace(current_schema())",
        ([TABLE, CHECKPOINT_TABLE],),
    )
    found = {row[0]: row for row in cur.fetchall()}
    problems: list[str] = []
    for name, (table, function, source) in GUARDS.items():
        source = source if source is not None else _v1_refuse_body()
        row = found.get(name)
        if row is None:
            problems.append(f"trigger {name!r} on {table} is missing (dropped)")
            continue
        _, _, enabled, proname, prosrc = row
        state = enabled.decode() if isinstance(enabled, bytes) else str(enabled)
        if state not in ("O", "A"):
            problems.append(f"trigger {name!r} on {table} is {_ENABLED.get(state, state)}")
        if proname != function:
            problems.append(f"trigger {name!r} calls {proname}(), expected {function}()")
        elif source is not None and prosrc != source:
            problems.append(
                f"function {function}() behind trigger {name!r} was replaced (its source differs)"
            )
    cur.execute("SELECT proname, prosrc FROM pg_proc WHERE proname = ANY(%s)", (list(FUNCTION_SOURCES),))
    sources = {row[0]: row[1] for row in cur.fetchall()}
    for function, source in FUNCTION_SOURCES.items():
        if sources.get(function) != source:
            problems.append(f"function {function}() that seals record hashes is missing or was replaced")
    cur.execute(
        "SELECT p.proname, coalesce(array_to_string(p.proconfig, ','), '') FROM pg_proc p "
        "WHERE p.proname = ANY(%s) AND p.pronamespace = to_regnamespace(current_schema())",
        ([fn.split("(")[0] for fn in PINNED_FUNCTIONS],),
    )
    pins = {row[0]: row[1] for row in cur.fetchall()}
    cur.execute("SELECT coalesce(max(version), 0) FROM drillbook_schema_version")
    row = cur.fetchone()
    if row is not None and int(row[0]) < 3:
        return problems  # not migrated yet: the status line says so (see ``pin_note``), it is not tampering
    for fn in PINNED_FUNCTIONS:
        name = fn.split("(")[0]
        if name in pins and not pins[name].startswith("search_path=pg_catalog, "):
            problems.append(
                f"function {name}() runs with the inserting session's search_path (its pin is gone), "
                "so a writer can steer the seal; run `drillbook ledger init`"
            )
    return problems


def pin_note(cur: Any) -> str | None:
    """A line for ``verify`` when the ledger predates migration 3 (the seal's search_path is not pinned yet)."""
    cur.execute("SELECT coalesce(max(version), 0) FROM drillbook_schema_version")
    row = cur.fetchone()
    if row is None or int(row[0]) >= 3:
        return None
    return (
        f"schema version {int(row[0])}: the seal's search_path is not pinned yet, so a writer role can steer "
        "which tail it chains onto; run `drillbook ledger init` as the owner to migrate"
    )


def _v1_refuse_body() -> str:
    return MIGRATIONS[0][2].split("$$")[1]


def guard_summary(problems: list[str]) -> str:
    """One line for people: all guards hold, or what does not."""
    if not problems:
        return f"append-only and seal triggers: all {len(GUARDS)} present and enabled"
    return "append-only/seal guard broken: " + "; ".join(problems)
