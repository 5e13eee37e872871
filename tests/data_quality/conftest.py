"""Fixtures of the data-quality tests: one database holding an orders table per variant.

Each variant is a copy of a healthy ``orders`` table with one defect applied by
SQL, so a test can assert that exactly the expected expectations fail.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SUITES = Path(__file__).resolve().parent / "suites"
REPO = Path(__file__).resolve().parents[2]
SHIPPED_SUITES = REPO / "include" / "expectations"

HEALTHY_ORDERS = """
create table {table} (
    id bigint, customer_id bigint, status text, total_cents bigint, currency char(3), email text,
    created_at timestamptz not null
);
insert into {table}
select g, 1 + g %% 97, (array['new','paid','shipped','cancelled','refunded'])[1 + g %% 5], (g * 37) %% 100000,
       (array['EUR','USD','GBP'])[1 + g %% 3], 'customer' || g || '@example.com',
       timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute'
from generate_series(1, %(rows)s) g;
"""


@pytest.fixture(autouse=True)
def _full_suite_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # Airflow may be imported by another test in this process; the suite check must still use GX here.
    monkeypatch.setenv("DRILLBOOK_SUITE_CHECK", "gx")


@pytest.fixture(scope="session")
def dq_db(pg) -> Iterator[str]:
    """DSN of a database for the variants of the orders table."""
    name = pg.create_database("dq")
    try:
        yield pg.dsn(name)
    finally:
        pg.drop_database(name)


@pytest.fixture(scope="session")
def orders_table(dq_db: str) -> Callable[..., str]:
    """Create a healthy orders table, apply ``defect`` SQL to it, return ``public.<name>``."""
    import psycopg

    def make(defect: str = "", *, rows: int = 1000, drop: str | None = None) -> str:
        name = f"orders_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(dq_db, autocommit=True) as conn, psycopg.ClientCursor(conn) as cur:
            cur.execute(HEALTHY_ORDERS.format(table=f"public.{name}"), {"rows": rows})
            if defect:
                cur.execute(defect.format(table=f"public.{name}"))
            if drop:
                cur.execute(f"alter table public.{name} drop column {drop}")
        return f"public.{name}"

    return make


@pytest.fixture(scope="session")
def shop_db(pg) -> Iterator[str]:
    """DSN of a database seeded with the demo shop (plugins/drillbook/sample/shop.py)."""
    from drillbook.sample.shop import seed_shop

    name = pg.create_database("dqshop")
    dsn = pg.dsn(name)
    seed_shop(dsn)
    try:
        yield dsn
    finally:
        pg.drop_database(name)
