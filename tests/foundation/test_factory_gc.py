"""``factory.cyclic_gc_paused``: the DAG files build with the cyclic collector off, then freeze what they built.

The rule it keeps: garbage made before the build is collected (its finalizers run) and not frozen; the collector
is back on after the build, as it was before; an error inside the build does not leave it off.
"""

from __future__ import annotations

import gc
import weakref

import pytest

from drillbook.airflow.factory import cyclic_gc_paused


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _thaw() -> object:
    was = gc.isenabled()
    yield
    gc.unfreeze()  # the context manager froze this test session's heap: give it back to the collector
    if was:
        gc.enable()


def test_garbage_from_before_the_build_is_collected_not_frozen() -> None:
    closed: list[str] = []
    before = _Cycle()
    weakref.finalize(before, closed.append, "finalized")
    del before  # now only a cycle holds it: only the cyclic collector can free it
    with cyclic_gc_paused():
        assert closed == ["finalized"]  # collected on the way in, not frozen with the build
        assert not gc.isenabled()
        built = _Cycle()
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0  # what was built is frozen: no later pass scans it
    assert built.me is built


def test_the_collector_is_restored_after_an_error_and_stays_off_if_it_was_off() -> None:
    with pytest.raises(RuntimeError), cyclic_gc_paused():
        raise RuntimeError("a broken catalogue")
    assert gc.isenabled()
    gc.disable()
    with cyclic_gc_paused():
        pass
    assert not gc.isenabled()
