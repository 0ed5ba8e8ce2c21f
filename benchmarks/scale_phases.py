"""Prepare and hand over N MNs through the Ryu application (the scale
benchmark's driver, ``scale_driver.py``), 50 in flight, and print the time
spent in the application in each phase (the switches' connection, DAD
filling the reserves, apart).  For timing whole processes of two
commits in turn with ``farm-bench`` (docs/benchmarks.md):

    farm-bench -n 3 --vs "sh -c 'cd BEFORE && PYTHONPATH=BEFORE exec python \\
        benchmarks/scale_phases.py 1000 >>before.txt'" -- sh -c 'cd AFTER && ...'
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile

from common import ROOT  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests"))


def main(argv=None) -> int:
    from apps.mpa_app import settle_heap
    from scale_driver import Driver, hand_over, prepare, scale_topology, state_store
    count = int((argv or sys.argv[1:])[0])
    logging.disable(logging.WARNING)   # the driver's MNs leave their old tunnels
    topology, radius, mns = scale_topology(count)
    with tempfile.TemporaryDirectory() as directory:
        driver = Driver(topology, radius, state_store(directory))
        settle_heap()
        driver.connect_all()
        connected = driver.busy
        states: dict = {}
        driver.run((prepare(driver, mn, states) for mn in mns), 50)
        prepared = driver.busy
        driver.run((hand_over(driver, mn, states) for mn in mns), 50)
        print(f"connect {connected:.3f} s, prepare {prepared - connected:.3f} s, "
              f"handover {driver.busy - prepared:.3f} s in the application")
    return 0


if __name__ == "__main__":
    sys.exit(main())
