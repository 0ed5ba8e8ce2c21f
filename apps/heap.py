"""The cyclic garbage collector kept to short pauses.

CPython's collector walks every object of the generations it collects.  A
young collection is due when allocations outnumber deallocations by the
threshold, but the young generation holds everything made since the last
collection and still alive: when old state is replaced by new (an MN's
records, its flows), deallocations keep the count low while that list
grows, and at ten thousand MNs a young collection walked it for up to
0.38 s; a full collection walks the whole heap.  What the controller keeps
(the topology, SAs, leases, tunnels, bindings, their flows) lives long, and
reference counting frees whatever is not in a cycle.  So:

* at start-up, everything loaded is collected once and frozen (moved to the
  permanent generation, which no collection walks);
* after every ``EVENTS`` events the worker collects the two young
  generations (:func:`after_event`), so a collection walks at most what
  those events made and kept;
* after every collection of the middle generation (or a full one) what
  survived it is frozen: the oldest generation stays empty;
* the automatic thresholds stay as a backstop for a burst within one event.

The price: a cycle that was alive when frozen and is dropped later is not
found until a full collection.  That walks the whole heap on the worker
(0.6 to 1.4 s at ten thousand MNs), and at that scale it found no object of
the controller's in a cycle once the two it made were broken: so it runs
only if ``gc_full_every_s`` asks (``heap_full_collections``; the cycles it
found in ``heap_cycles_found``, its longest pause in
``heap_full_collection_ms``), and a test keeps the controller from
making cycles (an MN's whole life through the application leaves none:
tests/unit/shell/test_mn_scale.py).
Collections after events are counted in ``heap_collections``.
"""

from __future__ import annotations

import gc
import time

EVENTS = 50             # events between collections of the young generations (gc_every_events)
YOUNG = 50_000          # the backstop: allocations between young collections (CPython: 700)
MIDDLE = 10             # young collections between middle ones (CPython: 10)

_counters: list = [None]   # where the callback counts (the latest app's)
_events = [0, EVENTS]      # events since the last collection, and between collections


def _after_collection(phase: str, info: dict) -> None:
    if phase == "stop" and info["generation"] >= 1:
        # The collection is over and its survivors are in the oldest
        # generation: freezing them is a splice of two lists.
        gc.freeze()
        counters = _counters[0]
        if counters is not None:
            counters["heap_freezes"] += 1


def settle(counters=None, every_events: int = EVENTS) -> None:
    """Collect and freeze what start-up loaded; from now on, collect the
    young generations every ``every_events`` events and freeze what
    survives each collection of the middle generation."""
    _counters[0] = counters
    _events[:] = [0, every_events]
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, gc.get_threshold()[2])
    if _after_collection not in gc.callbacks:
        gc.callbacks.append(_after_collection)


def after_event() -> None:
    """An event is over: every EVENTS, collect the young generations (and
    freeze what survived)."""
    _events[0] += 1
    if _events[0] >= _events[1]:
        _events[0] = 0
        gc.collect(1)
        counters = _counters[0]
        if counters is not None:
            counters["heap_collections"] += 1


def collect_everything(counters=None) -> int:
    """The full collection: thaw, collect, freeze again.  Walks the whole
    heap (hundreds of milliseconds at ten thousand MNs): the cycles it
    finds are those frozen alive and dropped since."""
    started = time.perf_counter()
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    if counters is not None:
        counters["heap_full_collections"] += 1
        counters["heap_cycles_found"] += found
        took = round((time.perf_counter() - started) * 1000)
        counters["heap_full_collection_ms"] = max(counters["heap_full_collection_ms"], took)
    return found
