"""Mobility: RFC 6252 §6.3 steps 2 (the tunnel) to 6, and §7.4-§7.6, one
module per step.

``core``          :class:`Mobility`, the parts composed; the clock (step, tick, next_due)
``state``         the tables of tunnels, bindings, standbys and handovers, their
                  indexes, their events and their records in the state file
``flowsync``      the make-before-break engine: each feature's desired flows, kept by
                  subject, and their differences sent in stages (generic: features
                  plug in as providers)
``tunnels``       step 2's proactive handover tunnel (PHT), which the MN asks for
                  before it moves: requests, MPLS labels, flows, following the MN
``bindings``      the binding update through the tunnel (step 3), the lab's binding
                  protocol, the fallback when a care-of loses its way
``buffer``        pre-switching's buffer at the nAR (step 4): punts, bounds,
                  overflow, delivery
``phases``        the handover's phases: pre-switching (step 4), the arrival and
                  switching (step 5), flushing, draining, post-switching (step 6),
                  switching back
``copy_forward``  copy-and-forward (§7.6.2) and bicasting (§7.6.1, C.1)
``records``       the handover's record, its phase names, the index of current ones
``views``         what the REST API and the metrics read

What other packages use is exported here.
"""

from mpa_sdn.mobility.copy_forward import Bicast  # noqa: F401  (the package's own API)
from mpa_sdn.mobility.core import LINGER_S, Mobility  # noqa: F401
from mpa_sdn.mobility.phases import QUIET_S  # noqa: F401
from mpa_sdn.mobility.records import (  # noqa: F401
    ACTIVE, BICAST, BUFFER, BUFFERING, COMPLETED, COPY, DRAINING, FLUSHING, PRE_SWITCHING,
    SETTLE_S, SWITCHED_BACK, SWITCHING, CurrentHandovers, Handover, Refused)
from mpa_sdn.mobility.state import HISTORY  # noqa: F401
