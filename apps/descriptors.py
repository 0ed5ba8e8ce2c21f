"""Enough file descriptors for the bounds the controller is configured with.

Every REST connection and every switch holds a descriptor.  A host's soft
limit is often 1024: with the default ``rest_max_connections`` (1024) and
any switch at all, accept() would fail with EMFILE long before the bound
refused anyone.  At start-up the soft limit is raised to the hard one (to
what is needed when the hard one is unlimited) when it is below what the
bounds need; when even the hard limit is too low the
controller does not start.
"""

from __future__ import annotations

import resource
import sys

# Besides REST connections and switches: logs, the state database, the
# listening sockets, the hub's own, the tokens and TLS files read at start.
RESERVED = 256


def needed(topology) -> int:
    return topology.controller.rest_max_connections + len(topology.switches) + RESERVED


def ensure(topology) -> str:
    """Raise the soft RLIMIT_NOFILE if the bounds need it: a line to log.
    When the hard limit is too low, say why and exit 2, as for any other
    configuration the controller cannot serve."""
    want = needed(topology)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return f"file descriptors: {soft} allowed, {want} needed"
    if hard != resource.RLIM_INFINITY and hard < want:
        settings = topology.controller
        print(f"file descriptors: the bounds need {want} (rest_max_connections "
              f"{settings.rest_max_connections}, {len(topology.switches)} switches, "
              f"{RESERVED} besides) and the hard limit is {hard}; raise it (ulimit -Hn, "
              "LimitNOFILE=) or lower rest_max_connections", file=sys.stderr)
        sys.exit(2)
    # An unlimited hard limit is no soft one a kernel takes: then what is needed.
    raised = want if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    return f"file descriptors: soft limit raised from {soft} to {raised} ({want} needed)"
