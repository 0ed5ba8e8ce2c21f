"""Copy-and-forward (RFC 6252 §7.6.2) with the second interface in the other
domain, on the real thing: two ``mpa-controller --domain`` processes, OVS,
Mininet and ``mpa-mn standby`` in mn1's host, over REST to each domain's
controller (docs/inter-domain.md, "Copy-and-forward across domains").

mn1 (home domain-a) is attached at ap-a1-1 with its home address bound
there; the lab gives it a second interface at ap-b1-1 in net-b1, domain-b's,
which the MN prepares with domain-b (SA, nCoA) and binds in standby at its
home domain.  A 1,000 packets/s stream runs from cn1 to the home address;
the first interface's link is then cut, and nothing may be lost or
duplicated: domain-a copies at ap-a1-1, holds what comes after the loss at
its border, and sends the copies mn1 missed, then the rest, across it.
"""

import dataclasses
import json

import pytest

from support.domain_rig import PORTS, domain_lab_fixtures, nft_tables
from support.lab_rig import domain_topology_fixture, ofctl_flows
from mpa_lab.experiment.handover_driver import DomainApi, HandoverDriver
from mpa_lab.traffic.streams import UdpStream

pytestmark = pytest.mark.integration

MN, CN = "mn1", "cn1"
SECOND_POA, SECOND_MAC = "ap-b1-1", "02:00:00:00:01:02"
RATE_PPS = 1000

topology_file, topology, controllers, lab = domain_lab_fixtures(fresh="copy-forward")
topology_file = domain_topology_fixture()   # the domains' AAA servers apart


@pytest.fixture(scope="module")
def driver(lab, controllers, tmp_path_factory):
    driver = HandoverDriver(
        lab, PORTS["domain-a"][1], str(tmp_path_factory.mktemp("mn-state")), "rest",
        domains={d: DomainApi(PORTS[d][1], c.mobile_nodes) for d, c in controllers.items()})
    yield driver
    if MN in lab.second:
        lab.remove_interface(MN)


def test_copy_and_forward_to_an_interface_in_the_other_domain_loses_nothing(
        lab, driver, controllers, topology, log_dir, tmp_path):
    domain_a, domain_b = controllers["domain-a"], controllers["domain-b"]
    home = str(topology.mobile_nodes[MN].home_address)
    bound = driver.bind_home(MN, CN)
    assert bound.ok, bound
    with UdpStream(lab, CN, MN, home, 5501, RATE_PPS, tmp_path / "arrivals.log") as stream:
        result = driver.sudden_loss(MN, SECOND_POA, SECOND_MAC)
    counters = domain_a.counters()
    report = stream.analysis([result.window()])
    with open(log_dir / "inter-domain-copy-and-forward.json", "w", encoding="utf-8") as f:
        json.dump({"result": dataclasses.asdict(result), "counters": counters,
                   "handovers": domain_a.get("/mpa/v1/handovers"), "stream": report}, f,
                  indent=1)
    assert result.ok, (result.errors, result.stderr[-800:])
    assert stream.sent["errors"] == {}, stream.sent
    summary = {k: report[k] for k in ("expected", "received", "lost", "reordered", "duplicated")}
    assert (report["lost"], report["duplicated"]) == (0, 0), (summary, report["windows"])
    # The standby went to the home domain, with the rewriting for eth1 only.
    ready = result.ready
    assert ready["binding"]["bound_at"] == "net-a1" and ready["binding"]["rewrite_at_mn"], ready
    assert "mpa_binding" in nft_tables(lab.host(MN))
    assert counters["standby_armed_abroad"] == 1, counters
    # The MN said which frames reached it. Every copy was forwarded, skipped
    # (the MN had it), delivered late or aged out; every one that went, went
    # out of domain-a's border to the nCoA. (How many the MN missed depends on
    # what was in flight at the cut: often some, sometimes none.)
    assert counters.get("copy_sorted_by_marker") == 1, counters
    assert counters["copy_made"] == sum(counters.get(f"copy_{k}", 0) for k in (
        "forwarded", "skipped", "late_delivered", "aged")), counters
    sent_on = counters.get("copy_forwarded", 0) + counters.get("copy_late_delivered", 0)
    assert counters.get("buffer_delivered_abroad", 0) >= sent_on, counters
    assert counters.get("buffer_dropped_no_destination", 0) == 0, counters
    [handover] = [h for h in domain_a.get("/mpa/v1/handovers")
                  if h["mode"] == "copy-and-forward"]
    assert handover["phase"] == "completed" and handover["network"] == "net-b1", handover
    # Nothing left behind: the binding on the nCoA abroad, no standby, no
    # buffering punt at the border; domain-b keeps no binding.
    [row] = [r for r in domain_a.mobile_nodes() if r["identity"].startswith(MN)]
    assert row["standby"] is None and row["handover"] is None, row
    assert row["binding"]["care_of"] == result.report["address"], row
    punts = [f for f in ofctl_flows("core-a") if "CONTROLLER" in f
             and result.report["address"] in f]
    assert not punts, punts
    assert all(r.get("binding") is None for r in domain_b.mobile_nodes()
               if r["identity"].startswith(MN))
