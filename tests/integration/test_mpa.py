"""Pre-authentication and pre-configuration on the real thing: OVS, Mininet,
the controller process, the mpa-mn client, busybox udhcpc.

The lab here has two extra hosts: a squatter sitting silently on the first
address of net-b1's pool (only the CA's ARP probes can find it) and a DHCP
client with no address at all.
"""

import json

import pytest

from support.lab_rig import REST_PORT, management_fixtures, running_lab, wait_for
from mpa_lab.experiment.preconfigure import run_mpa_mn
from mpa_lab.net.probes import ping

pytestmark = pytest.mark.integration

MN_MAC = "02:00:00:00:01:01"
SQUATTED = "10.2.1.100"   # the first address of net-b1's pool
SQUATTER = ("sq1", "02:00:00:00:99:01", "ap-b1-1")
DHCP_CLIENT = ("dh1", "02:00:00:00:d1:01", "ap-b1-2")
DHCLIENT = ("dc1", "02:00:00:00:dc:01", "ap-a1-2")
# dhclient's own script would rewrite the machine's resolv.conf: this one
# only sets and clears the address.
DHCLIENT_SCRIPT = """#!/bin/sh
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT) ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
  RELEASE|EXPIRE|STOP) ip -4 addr flush dev "$interface" ;;
esac
exit 0
"""


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    """The MN's state (its SAs and sequence numbers)."""
    return tmp_path_factory.mktemp("mn")


controller = management_fixtures("controller-mpa")[0]


@pytest.fixture(scope="module")
def lab(controller, topology):
    from mpa_lab.net.lab import ExtraHost
    extra = [ExtraHost(*SQUATTER, address=SQUATTED), ExtraHost(*DHCP_CLIENT),
             ExtraHost(*DHCLIENT)]
    with running_lab(controller, topology, management=True, extra_hosts=extra) as lab:
        yield lab


def mpa_mn(lab, state_dir, channel, *args, credentials=None):
    """mpa-mn --json inside mn1: (exit status, its JSON document)."""
    return run_mpa_mn(lab, "mn1", REST_PORT, str(state_dir / "mn1.json"), channel, *args,
                      credentials=credentials)


def sa_states(controller) -> list[dict]:
    """The controller's MPA-SAs without their countdown (it moves every second)."""
    return [{k: v for k, v in sa.items() if k != "expires_in"}
            for sa in controller.get("/mpa/v1/sas")]


def mn_leases(controller, network) -> list[str]:
    return [l["address"] for l in controller.get(f"/mpa/v1/networks/{network}/leases")
            if l["mac"] == MN_MAC]


@pytest.fixture(scope="module")
def preauthenticated(lab, controller, state_dir):
    """mn1, in net-a1, ready for both its CTNs: net-b1 (domain-b) in-band, net-a2
    (domain-a) over REST. Returns both mpa-mn results."""
    rc, b1 = mpa_mn(lab, state_dir, "inband", "up", "net-b1")
    assert rc == 0, b1
    rc, a2 = mpa_mn(lab, state_dir, "rest", "up", "net-a2")
    assert rc == 0, a2
    return b1, a2


def vif_addresses(lab) -> dict:
    """Interface -> IPv4 addresses in mn1."""
    out = lab.host("mn1").cmd("ip -j addr show")
    return {link["ifname"]: [a["local"] for a in link.get("addr_info", []) if a["family"] == "inet"]
            for link in json.loads(out)}


def test_the_squatter_is_found_by_the_cas_probes(lab, controller):
    pool = wait_for(lambda: (p := controller.get("/mpa/v1/networks/net-b1/pool"))
                    and SQUATTED in p["in_use_elsewhere"] and p, 15, "DAD to find the squatter")
    assert SQUATTED not in pool["verified_free"]
    assert controller.counters()["dad_conflict"] >= 1


def test_mn_preauthenticates_with_two_ctns_in_two_domains(lab, controller, preauthenticated):
    b1, a2 = preauthenticated
    assert b1["results"][0]["config"]["address"] == "10.2.1.101", "the squatted .100 skipped"
    assert a2["results"][0]["config"]["address"] == "10.1.2.100"
    sas = {sa["network"]: sa for sa in controller.get("/mpa/v1/sas")}
    assert sas["net-b1"]["domain"] == "domain-b" and sas["net-a2"]["domain"] == "domain-a"
    assert {sa["state"] for sa in sas.values()} == {"pre-authenticated"}
    assert mn_leases(controller, "net-b1") == ["10.2.1.101"]
    assert mn_leases(controller, "net-a2") == ["10.1.2.100"]
    # Each nCoA sits on its own virtual interface; the physical one keeps its
    # address (and its home address).
    addresses = vif_addresses(lab)
    physical = lab.host("mn1").defaultIntf().name
    assert addresses[physical] == ["10.1.1.199", "10.255.0.1"]
    vifs = {a for name, found in addresses.items() if name.startswith("mpa-") for a in found}
    assert vifs == {"10.2.1.101", "10.1.2.100"}


def test_busybox_udhcpc_gets_a_lease_over_the_wire(lab, controller, tmp_path):
    host = lab.host("dh1")
    intf = host.defaultIntf().name
    script = tmp_path / "udhcpc-script"
    script.write_text('#!/bin/sh\n[ "$1" = bound ] && ip addr add $ip/$mask dev $interface '
                      '&& ip route replace default via $router\nexit 0\n')
    script.chmod(0o755)
    out = host.cmd(f"busybox udhcpc -i {intf} -n -q -f -t 6 -T 1 -s {script} 2>&1")
    assert "lease of" in out and "obtained" in out, out
    all_leases = controller.get("/mpa/v1/networks/net-b1/leases")
    lease = {l["mac"]: l for l in all_leases}[DHCP_CLIENT[1]]
    assert lease["state"] == "bound" and lease["address"] != SQUATTED
    assert len({l["address"] for l in all_leases}) == len(all_leases)
    assert lease["address"] in host.cmd(f"ip -4 addr show dev {intf}")
    assert ping(host, "10.2.1.1").ok, "the client uses its lease"


def test_isc_dhclient_gets_releases_and_gets_back_its_address(lab, controller, tmp_path):
    host = lab.host("dc1")
    intf = host.defaultIntf().name
    script = tmp_path / "dhclient-script"
    script.write_text(DHCLIENT_SCRIPT)
    script.chmod(0o755)
    files = f"-lf {tmp_path}/dc1.leases -pf {tmp_path}/dc1.pid -sf {script}"

    def leases():
        return {l["mac"]: l for l in controller.get("/mpa/v1/networks/net-a1/leases")}

    out = host.cmd(f"timeout 30 dhclient -4 -1 -v {files} {intf} 2>&1")
    assert "bound to" in out, out
    address = leases()[DHCLIENT[1]]["address"]
    assert address in host.cmd(f"ip -4 addr show dev {intf}")
    assert ping(host, "10.1.1.1").ok
    out = host.cmd(f"timeout 30 dhclient -4 -r -v {files} {intf} 2>&1")
    assert "DHCPRELEASE" in out, out
    wait_for(lambda: DHCLIENT[1] not in leases(), 5, "the release to reach the CA")
    out = host.cmd(f"timeout 30 dhclient -4 -1 -v {files} {intf} 2>&1")
    assert "bound to" in out, out
    assert leases()[DHCLIENT[1]]["address"] == address, "the same client, the same address"
    host.cmd(f"dhclient -x {files} {intf} 2>&1")


def test_a_controller_restart_loses_no_sa_and_no_lease(lab, controller, state_dir,
                                                      preauthenticated):
    sas = sa_states(controller)
    leases = {n: controller.get(f"/mpa/v1/networks/{n}/leases") for n in ("net-b1", "net-a2")}
    assert {sa["network"] for sa in sas} == {"net-b1", "net-a2"}
    controller.stop()
    controller.start()
    controller.wait_switches()
    assert sa_states(controller) == sas
    for network, before in leases.items():
        after = controller.get(f"/mpa/v1/networks/{network}/leases")
        assert [(l["address"], l["mac"]) for l in after] == \
            [(l["address"], l["mac"]) for l in before]
    # The MN goes on with the SAs it has: same keys, next sequence numbers.
    rc, out = mpa_mn(lab, state_dir, "inband", "configure", "net-b1")
    assert rc == 0, out
    rc, out = mpa_mn(lab, state_dir, "rest", "configure", "net-a2")
    assert rc == 0, out
    assert out["results"][0]["address"] == "10.1.2.100"
    assert mn_leases(controller, "net-b1") == ["10.2.1.101"]
