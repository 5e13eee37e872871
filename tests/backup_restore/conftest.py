"""Fixtures of the backup-restore tests: a seeded shop, its dumps in every format, drill builders.

The shop is seeded once per session (several tables, sequences, a view, a
materialized view, a function); every broken backup is built from these real
dumps inside the test that needs it.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drillbook.drills.backup_restore.catalogue import BackupRestoreDrill
from drillbook.drills.backup_restore.drill import run_backup_restore
from drillbook.drills.backup_restore.scratch import PREFIX
from drillbook.resources.pg import tool_env

SHOP_CUSTOMERS = 200
SHOP_ORDERS = 2000
MIN_ROWS = {"public.customers": 100, "public.orders": 1000}


@dataclass
class Shop:
    db: str
    dsn: str
    rows: dict[str, int]


def pg_dump(pg: Any, dsn: str, out: Path, *args: str) -> Path:
    """Run the test server's pg_dump (password through the environment) into ``out``."""
    subprocess.run(
        [str(Path(pg.bin_dir) / "pg_dump"), *args, "-f", str(out)],
        env=tool_env(dsn),
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


@pytest.fixture(scope="session")
def shop(pg) -> Shop:
    from drillbook.sample.shop import seed_shop

    name = pg.create_database("shop")
    dsn = pg.dsn(name)
    rows = seed_shop(dsn, customers=SHOP_CUSTOMERS, orders=SHOP_ORDERS)
    yield Shop(db=name, dsn=dsn, rows=rows)
    pg.drop_database(name)


@pytest.fixture(scope="session")
def dumps(pg, shop: Shop, tmp_path_factory) -> dict[str, Path]:
    """One healthy dump of the shop per format, each in its own directory."""
    root = tmp_path_factory.mktemp("dumps")
    out: dict[str, Path] = {}
    for fmt, flag, name in [
        ("custom", "-Fc", "shop.dump"),
        ("directory", "-Fd", "shop.dir"),
        ("tar", "-Ft", "shop.tar"),
        ("plain", "-Fp", "shop.sql"),
    ]:
        (root / fmt).mkdir()
        out[fmt] = pg_dump(pg, shop.dsn, root / fmt / name, flag)
    (root / "plain.gz").mkdir()
    gz = root / "plain.gz" / "shop.sql.gz"
    with out["plain"].open("rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    out["plain.gz"] = gz
    return out


def make_drill(location: str, **overrides: Any) -> BackupRestoreDrill:
    """A backup_restore drill with minimal verify settings; ``overrides`` replace top-level keys."""
    data: dict[str, Any] = {
        "name": "shop_test",
        "kind": "backup_restore",
        "schedule": "@daily",
        "controls": ["SOC2:A1.2"],
        "backup": {"location": location},
        "scratch": {"connection": "drillbook_scratch", "max_age": "6h"},
        "objectives": {"rto": "15m", "rpo": "26h"},
        "restore": {"jobs": 2},
        "verify": {"min_rows": dict(MIN_ROWS), "rpo_probe": "select max(created_at) from public.orders"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return BackupRestoreDrill.model_validate(data)


@pytest.fixture
def drill_runner(pg, tmp_path):
    """Run a drill against the test server: scratch on ``pg.admin_dsn``, work dir under tmp_path."""

    def run(drill: BackupRestoreDrill, **kwargs: Any):
        kwargs.setdefault("scratch_dsn", pg.admin_dsn)
        kwargs.setdefault("work_dir", tmp_path / "work")
        return run_backup_restore(drill=drill, **kwargs)

    return run


@pytest.fixture(autouse=True)
def _no_scratch_left(pg):
    """Every test must leave no scratch database of its own behind."""
    before = set(pg.databases(PREFIX + "shop_"))
    yield
    left = set(pg.databases(PREFIX + "shop_")) - before
    for name in left:
        pg.drop_database(name)
    assert not left, f"scratch databases left behind: {sorted(left)}"


def codes(result) -> list[str]:
    return [f.code for f in result.findings]


def serious(result) -> list[str]:
    """Codes of findings at or above medium."""
    return [f.code for f in result.findings if f.severity.at_least("medium")]


@pytest.fixture
def variant(pg, shop: Shop, tmp_path):
    """Dump a changed copy of the shop: ``variant(mutate, fmt="-Fc", name="shop.dump")`` -> the dump's path.

    ``mutate(dsn)`` changes the copy (SQL through the sample helpers) before it
    is dumped; the copy is dropped afterwards.
    """
    made: list[str] = []

    def make(
        mutate=None, *, flag: str = "-Fc", name: str = "shop.dump", template: bool = True, dump_args=()
    ) -> Path:
        db = f"variant_{len(made)}_{tmp_path.name[-20:]}".lower().replace("-", "_")
        pg.execute("postgres", f'CREATE DATABASE "{db}"' + (f' TEMPLATE "{shop.db}"' if template else ""))
        made.append(db)
        if mutate is not None:
            mutate(pg.dsn(db))
        folder = tmp_path / f"backup_{len(made)}"
        folder.mkdir()
        return pg_dump(pg, pg.dsn(db), folder / name, flag, *dump_args)

    yield make
    for db in made:
        pg.drop_database(db)
