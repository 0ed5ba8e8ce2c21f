"""Where the traced memory per MN of ``mn_scale.py`` goes, by source line.

The same run as one row of ``mn_scale.py`` (``--mns`` resident MNs prepare
and hand over; then ``--sample`` more under tracemalloc, the switches
keeping nothing), and what the sample left allocated, per MN of it, by the
file and the line that allocated it.  Bounded structures (the event log's
ring, the match and address caches) take in the sample's entries and drop
older ones allocated before tracing began, whose release tracemalloc does
not see: their lines show growth that does not grow with the MNs.

    .venv/bin/python benchmarks/mn_memory.py --mns 10000 --sample 200
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import tracemalloc

from common import ROOT  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mns", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--lines", type=int, default=40, help="lines to list")
    args = parser.parse_args(argv)
    from apps.mpa_app import settle_heap
    from mn_scale import SETTLE_S, WINDOW, _Discard
    from scale_driver import Driver, hand_over, prepare, scale_topology, state_store

    topology, radius, mns = scale_topology(args.mns + args.sample)
    resident, extra = mns[:args.mns], mns[args.mns:]
    with tempfile.TemporaryDirectory() as directory:
        store = state_store(directory)
        driver = Driver(topology, radius, store)
        settle_heap()
        driver.connect_all()
        states: dict = {}
        driver.run((prepare(driver, mn, states) for mn in resident), WINDOW)
        driver.run((hand_over(driver, mn, states) for mn in resident), WINDOW)
        driver.settle(SETTLE_S)
        driver.record = False
        for dp in driver.datapaths.values():
            dp.table = _Discard()
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        driver.run((prepare(driver, mn, states) for mn in extra), WINDOW)
        driver.run((hand_over(driver, mn, states) for mn in extra), WINDOW)
        driver.settle(SETTLE_S)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        store.close()
    per_mn = args.sample
    by_file = after.compare_to(before, "filename")
    print(f"{args.mns:,} MNs resident, {args.sample} more traced: "
          f"{sum(s.size_diff for s in by_file) / per_mn:,.0f} bytes per MN")
    print("\nbytes per MN, objects, where (by line)")
    for stat in after.compare_to(before, "lineno")[:args.lines]:
        frame = stat.traceback[0]
        print(f"{stat.size_diff / per_mn:8,.0f} {stat.count_diff:8,} "
              f"{os.path.relpath(frame.filename, ROOT)}:{frame.lineno}")
    print("\nbytes per MN, by file")
    for stat in by_file[:args.lines]:
        print(f"{stat.size_diff / per_mn:8,.0f} {os.path.relpath(stat.traceback[0].filename, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
