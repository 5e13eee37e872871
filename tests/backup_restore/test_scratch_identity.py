"""The guard asks the servers who they are: a socket, an alias or another spelling of the source is refused.

The machine's PostgreSQL 15 (127.0.0.1:5432 and /var/run/postgresql, trust auth)
plays the source here because the embedded pgserver listens on a unix socket
only; the embedded server is the genuinely different scratch server.
"""

from __future__ import annotations

import pytest

from drillbook.drills.backup_restore.scratch import ScratchGuard, SourceUnreachable
from drillbook.errors import ScratchUnsafe

PG15_TCP = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"


@pytest.fixture(scope="module")
def pg15() -> str:
    import psycopg

    try:
        with psycopg.connect(PG15_TCP, autocommit=True) as conn:
            conn.execute("select 1")
    except psycopg.OperationalError as exc:  # pragma: no cover - the CI machine has it
        pytest.skip(f"the machine's PostgreSQL 15 on 127.0.0.1:5432 is not reachable: {exc}")
    return PG15_TCP


@pytest.mark.parametrize(
    "scratch",
    [
        "host=/var/run/postgresql port=5432 user=postgres dbname=postgres",  # the unix socket
        "host=db.alias hostaddr=127.0.0.1 port=5432 user=postgres dbname=postgres",  # an alias
        "host=localhost port=5432 user=postgres dbname=postgres",  # localhost vs 127.0.0.1
        "postgresql://postgres@127.0.0.1:5432/postgres?application_name=other",  # a URI
    ],
    ids=["socket", "alias", "localhost", "uri"],
)
def test_another_spelling_of_the_source_is_refused(pg15, scratch):
    guard = ScratchGuard(scratch_dsn=scratch, source_dsn=pg15)
    with pytest.raises(ScratchUnsafe, match="reaches the source database"):
        guard.check_server()
    with pytest.raises(ScratchUnsafe):
        guard.create(drill="shop_alias", run_id="manual__1")


def test_socket_dsn_to_the_source_is_refused_by_the_drill(pg, shop, dumps, drill_runner):
    """The embedded server: the source reached by URI, the scratch by a key=value socket DSN to the same database."""
    from drillbook.resources.pg import parse

    p = parse(shop.dsn)
    socket_dsn = (
        f"host={p['host']} port={p.get('port', '5432')} user={p.get('user', 'postgres')} dbname={shop.db}"
    )
    from tests.backup_restore.conftest import codes, make_drill

    result = drill_runner(
        make_drill(str(dumps["custom"].parent)), scratch_dsn=socket_dsn, source_dsn=shop.dsn
    )
    assert codes(result) == ["SCRATCH_UNSAFE"]
    assert "same system_identifier" in result.findings[0].message


def test_a_different_server_is_accepted(pg, pg15):
    ScratchGuard(scratch_dsn=pg.admin_dsn, source_dsn=pg15).check_server()
    ScratchGuard(scratch_dsn=pg15, source_dsn=pg.admin_dsn).check_server()


def test_same_server_other_database_is_accepted(pg, shop):
    """Scratch databases next to the source, never in it (the demo's layout)."""
    ScratchGuard(scratch_dsn=pg.admin_dsn, source_dsn=shop.dsn).check_server()


def test_source_that_cannot_be_asked_is_refused():
    guard = ScratchGuard(
        scratch_dsn=PG15_TCP, source_dsn="host=127.0.0.1 port=1 dbname=shop user=x connect_timeout=2"
    )
    with pytest.raises(SourceUnreachable, match="refusing to create anything"):
        guard.check_server()
