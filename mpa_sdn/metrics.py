"""The controller's metrics in Prometheus's text format (``GET /metrics``).

The core's counters are the one record of what happened; a scrape reads
them (and the state: connected switches, buffers) through a collector, so
nothing is counted twice and a counter added anywhere shows up at once, as
``mpa_events_total{event=NAME}`` if no family below names it.  The one thing
a scrape cannot rebuild is a distribution, so each handover's step
latencies are observed into histograms as it ends (:meth:`handover_ended`).

Each controller has its own registry: nothing global, so tests and several
controllers in one process do not mix.
"""

from __future__ import annotations

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Histogram,
                               disable_created_metrics, generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# A ``_created`` sample would be the wall-clock time a series began: the core
# reads no clock, and a scraper learns of resets from the counters anyway.
disable_created_metrics()

CONTENT_TYPE = CONTENT_TYPE_LATEST
# From a few ms (flows confirmed) to the switch deadline (seconds).
# A pre-authentication ends within mpa.pana_session_s (30 s by default, at most 3600).
PREAUTH_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0, 300.0)
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The handover view's fields (ms) observed, and the step each is.
STEPS = {"pre_switch_to_arrival_ms": "pre_switch_to_arrival",
         "signal_to_flows_ms": "signal_to_flows", "total_ms": "total"}
# Counter families by name prefix: (metric, help, label for the rest of the name).
PREFIXED = (
    ("handover_switch_back_", "mpa_handover_switch_backs_total",
     "Handovers switched back, by why", "reason"),
    ("handover_arrival_", "mpa_handover_arrivals_total",
     "Arrivals of MNs at their target, by how they were seen", "how"),
    ("buffer_dropped_", "mpa_buffer_dropped_total",
     "Buffered packets dropped, by reason", "reason"),
    ("openflow_error_type_", "mpa_openflow_errors_by_type_total",
     "OpenFlow error messages from switches, by OFPET type", "type"),
    ("sent_", "mpa_openflow_messages_sent_total",
     "OpenFlow messages sent to switches, by message class (OFPFlowMod: the flow-mods)",
     "message"),
)
# Entries of the counters dict that are levels, not counts (apps.rest_server
# and rest_api.event_stream keep them): gauges, not in mpa_events_total.
GAUGES = (("rest_connections_open", "mpa_rest_connections_open", "REST connections open now"),
          ("rest_streams_open", "mpa_rest_event_streams_open", "Event streams open now"),
          ("heap_full_collection_ms", "mpa_heap_full_collection_longest_ms",
           "The longest full garbage collection so far, in ms (apps/heap.py)"))
# Authentication and signalling refusals, by reason (the counter's name).
AUTH_FAILURES = ("pana_authentication_rejected", "pana_rate_limited", "pana_aaa_unreachable",
                 "pana_dropped_busy", "pana_dropped_busy_source", "pana_dropped_bad_auth",
                 "auth_mac_in_use", "sa_false_mac_claim", "signal_mac_mismatch",
                 "signal_bad_mac", "signal_replay", "signal_outside_window",
                 "signal_unknown_sa", "signal_sa_expired", "signal_wrong_network")


class Metrics:
    def __init__(self, controller):
        self.registry = CollectorRegistry(auto_describe=True)
        self.steps = Histogram("mpa_handover_step_seconds",
                               "Handover step latencies: pre-switch to arrival, arrival "
                               "to the new flows confirmed, and the whole handover; by "
                               "mode (buffer, bicast, copy-and-forward) and result",
                               ["step", "mode", "result"], buckets=STEP_BUCKETS,
                               registry=self.registry)
        self.preauthentications = Histogram(
            "mpa_preauthentication_seconds",
            "PANA pre-authentications from the PCI to their end at the AA (Tauth, RFC 6252 "
            "C.5.3), EAP through the domain's RADIUS server included; by result "
            "(established, rejected, expired, unanswered)", ["result"],
            buckets=PREAUTH_BUCKETS, registry=self.registry)
        self.registry.register(_State(controller))

    def preauthentication_ended(self, data: dict) -> None:
        """A ``preauthentication`` event's data."""
        self.preauthentications.labels(data["result"]).observe(data["ms"] / 1000)

    def handover_ended(self, view: dict) -> None:
        """A handover's view (``Handover.view``) as it ends."""
        result = "switched_back" if view.get("switched_back") else "completed"
        for field, step in STEPS.items():
            ms = view.get(field)
            if step == "pre_switch_to_arrival" and (
                    result != "completed" or view.get("mode") == "copy-and-forward"):
                continue   # no arrival (switched back), or no pre-switch (a sudden loss)
            if isinstance(ms, (int, float)) and ms >= 0:
                self.steps.labels(step, view.get("mode"), result).observe(ms / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _State:
    """The counters and the state, read at each scrape."""

    def __init__(self, controller):
        self.core = controller

    def describe(self):
        return []   # families depend on the counters present: nothing fixed to check

    def collect(self):
        yield from _from_counters(dict(self.core.counters))
        yield from self._from_state()

    def _from_state(self):
        """Levels read from the core's state: switches and handover buffers."""
        switches = GaugeMetricFamily("mpa_switches", "Switches of the topology, by state",
                                     labels=["state"])
        states = list(self.core.switches.values())
        switches.add_metric(["connected"], len(states))
        switches.add_metric(["reconciled"], sum(s.reconciled_at is not None for s in states))
        switches.add_metric(["configured"], len(self.core.graph.switch_ids()))
        yield switches
        occupancy = GaugeMetricFamily("mpa_buffer_occupancy", "What handover buffers hold now",
                                      labels=["unit"])
        buffers = [h.buffer for h in self.core.mobility.handovers.values()
                   if h.ended_at is None]
        occupancy.add_metric(["packets"], sum(len(b) for b in buffers))
        occupancy.add_metric(["bytes"], sum(b.bytes for b in buffers))
        yield occupancy
        active = GaugeMetricFamily("mpa_handovers_in_progress", "Handovers in progress")
        active.add_metric([], len(buffers))
        yield active


def _single_counter(name: str, help_text: str, value: int) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help_text)
    family.add_metric([], value)
    return family


def _from_counters(counters: dict):
    """The counters dict's families: the named ones first, then every key none
    of them took in mpa_events_total, so no counter goes unexposed."""
    taken = set()
    handovers = CounterMetricFamily("mpa_handovers_total",
                                    "Handovers ended, by result", labels=["result"])
    for result, key in (("completed", "handover_completed"),
                        ("switched_back", "handover_switched_back")):
        handovers.add_metric([result], counters.get(key, 0))
        taken.add(key)
    yield handovers
    yield _single_counter("mpa_handovers_started_total", "Handovers begun: pre-switch signals "
                          "and sudden link losses",
                          counters.get("handover_pre_switch", 0)
                          + counters.get("handover_link_lost_port", 0)
                          + counters.get("handover_link_lost_signal", 0))
    for prefix, name, help_text, label in PREFIXED:
        family = CounterMetricFamily(name, help_text, labels=[label])
        for key in sorted(k for k in counters if k.startswith(prefix)):
            family.add_metric([key[len(prefix):]], counters[key])
            taken.add(key)
        yield family
    buffered = CounterMetricFamily("mpa_buffer_packets_total",
                                   "Packets through handover buffers, by what happened",
                                   labels=["event"])
    for event in ("buffered", "flushed", "relayed", "late_delivered"):
        buffered.add_metric([event], counters.get(f"buffer_{event}", 0))
        taken.add(f"buffer_{event}")
    yield buffered
    auth = CounterMetricFamily("mpa_authentication_failures_total",
                               "Authentication and signalling refusals, by reason",
                               labels=["reason"])
    for key in AUTH_FAILURES:
        auth.add_metric([key], counters.get(key, 0))
        taken.add(key)
    yield auth
    for key, name, help_text in (
            ("packet_in", "mpa_packet_ins_total", "Packet-ins handled"),
            ("openflow_error", "mpa_openflow_errors_total", "OpenFlow error messages")):
        yield _single_counter(name, help_text, counters.get(key, 0))
        taken.add(key)
    for key, name, help_text in GAUGES:   # levels kept in the counters dict
        level = GaugeMetricFamily(name, help_text)
        level.add_metric([], counters.get(key, 0))
        taken.add(key)
        yield level
    events = CounterMetricFamily("mpa_events_total", "Every other counter of the "
                                 "controller, by name", labels=["event"])
    for key in sorted(set(counters) - taken):
        events.add_metric([key], counters[key])
    yield events
