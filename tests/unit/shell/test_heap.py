"""The collector's policy: what survives a collection of the middle
generation is frozen, so the oldest generation stays empty and no
collection walks more than what was made since the last; a cycle frozen
alive and dropped later is found by the full collection, and counted."""

from __future__ import annotations

import collections
import gc
import weakref

import pytest

from apps import heap


@pytest.fixture
def settled():
    thresholds = gc.get_threshold()
    counters = collections.Counter()
    heap.settle(counters)
    yield counters
    gc.callbacks.remove(heap._after_collection)
    gc.set_threshold(*thresholds)
    gc.unfreeze()


class Node:
    def __init__(self):
        self.other = None


def test_what_survives_a_middle_collection_is_frozen_and_the_oldest_generation_stays_empty(
        settled):
    frozen = gc.get_freeze_count()
    kept = [Node() for _ in range(1000)]
    gc.collect(1)
    assert gc.get_objects(generation=2) == []
    assert gc.get_freeze_count() >= frozen + 1000
    assert settled["heap_freezes"] >= 1
    assert gc.get_threshold()[:2] == (heap.YOUNG, heap.MIDDLE)
    del kept


def test_a_cycle_frozen_alive_and_dropped_is_found_by_the_full_collection(settled):
    a, b = Node(), Node()
    a.other, b.other = b, a
    gc.collect(1)             # survives, and is frozen
    alive = weakref.ref(a)
    del a, b                  # now garbage, in the permanent generation
    gc.collect()
    assert alive() is not None   # no ordinary collection walks it
    assert heap.collect_everything(settled) >= 2
    assert alive() is None
    assert settled["heap_full_collections"] == 1 and settled["heap_cycles_found"] >= 2
    assert gc.get_objects(generation=2) == []


def test_every_events_events_the_young_generations_are_collected_and_their_survivors_frozen(
        settled):
    heap.settle(settled, every_events=7)     # gc_every_events
    kept = []
    for _ in range(6):
        kept.append(Node())
        heap.after_event()
    assert settled["heap_collections"] == 0
    frozen = gc.get_freeze_count()
    heap.after_event()
    assert settled["heap_collections"] == 1
    assert gc.get_freeze_count() >= frozen + len(kept)
    assert gc.get_objects(generation=0) == gc.get_objects(generation=2) == []


def test_the_worker_runs_the_collection_after_each_event_it_handles(topology, monkeypatch):
    from apps import mpa_app, runtime
    runtime.configure(topology, "test.yaml")
    app = mpa_app.MpaApp()
    calls = []
    monkeypatch.setattr(heap, "after_event", lambda: calls.append(1))
    app.handle(("tick", None, lambda now: [], ()))
    app.handle(("tick", None, lambda now: 1 / 0, ()))   # one that fails too
    assert calls == [1, 1] and app.counters["handler_error"] == 1


def test_the_longest_full_collection_is_a_gauge_in_the_metrics(topology):
    """A level (the longest pause so far), not a count; the collections
    and the cycles found are counts."""
    from mpa_sdn.controller import Controller
    counters = collections.Counter()
    core = Controller(topology, counters)
    heap.collect_everything(counters)
    text = core.metrics.render().decode()
    assert "# TYPE mpa_heap_full_collection_longest_ms gauge" in text
    assert 'event="heap_full_collection_ms"' not in text
    assert 'event="heap_full_collections"} 1.0' in text


def test_the_full_collection_runs_only_when_configured(topology):
    """gc_full_every_s 0 (the default): never; otherwise that often."""
    import dataclasses
    import math
    from apps import mpa_app, runtime
    runtime.configure(topology, "test.yaml")
    app = mpa_app.MpaApp()
    assert app.settings.gc_full_every_s == 0
    assert app._next_full_collection(100.0) == math.inf
    app.settings = dataclasses.replace(app.settings, gc_full_every_s=600.0)
    assert app._next_full_collection(100.0) == 700.0
