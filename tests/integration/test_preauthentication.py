"""Pre-authentication by PANA and RADIUS on the real thing: the inter-domain
lab (a controller per domain, topologies/inter_domain.yaml), each domain's
own FreeRADIUS started by the lab's AAA module, ``mpa-mn`` in mn1's host.

mn1 (mn1@domain-a) sits at ap-a1-1 in net-a1 (domain-a); its candidates are
net-a2 (domain-a) and net-b1 (domain-b).  The RADIUS timers are short here
(RADIUS_SETTINGS) so that a server that is down is found within seconds.
The tests run in file order: refusals after the successes, the server taken
down last.
"""

import hashlib
import hmac
import shlex
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

from mpa_lab.aaa.lab_servers import ttls_path
from mpa_lab.experiment.controllers import SessionControllers
from mpa_lab.experiment.preconfigure import mpa_mn_command
from support.domain_rig import PORTS, domain_lab_fixtures, json_documents, write_topology
from mpa_protocol import pana
from support import tshark
from support.lab_rig import apart, running_aaa, wait_for

pytestmark = pytest.mark.integration

MN = "mn1"
IDENTITY = "mn1@domain-a"
# Retransmissions at 0.2, 0.4 s, given up after 1.5 s: what the AA waits for
# a server that does not answer before it refuses the MN (mpa.radius_*).
RADIUS_SETTINGS = {"radius_initial_rt_s": 0.2, "radius_max_rt_s": 0.4, "radius_max_count": 2,
                   "radius_max_duration_s": 1.5, "radius_dead_time_s": 0}
# mpa-mn is killed past this (exit 137): a refusal must come well before.
MN_TIMEOUT_S = 40

topology_file, topology, controllers, lab = domain_lab_fixtures(fresh="preauthentication")


@pytest.fixture(scope="module")
def aaa_servers(prerequisites, tmp_path_factory):
    """(topology file, LabAaa): the inter-domain topology with short RADIUS
    timers and its two FreeRADIUS running for the module."""
    path = write_topology(tmp_path_factory.mktemp("topology") / "inter_domain.yaml")
    with running_aaa(apart(path, **RADIUS_SETTINGS)) as aaa:
        yield path, aaa


@pytest.fixture(scope="module", name="topology_file")
def _topology_file(aaa_servers) -> str:
    return aaa_servers[0]


topology_file = _topology_file   # replaces domain_lab_fixtures's: the servers run with it


@pytest.fixture(scope="module")
def aaa(aaa_servers):
    return aaa_servers[1]


def mpa_mn(lab, state_dir: Path, *args: str, credentials: str | None = None,
           channel: str = "inband") -> tuple[int, dict]:
    """``mpa-mn --json ARGS`` in mn1's host with ``credentials`` (default:
    the topology's, EAP-TLS): (exit status, its last JSON document)."""
    command = mpa_mn_command(lab, MN, PORTS["domain-a"][1], str(state_dir / "mn1.json"),
                             channel, *args, credentials=credentials,
                             domain_rest_ports={d: rest for d, (_, rest) in PORTS.items()})
    command = ["timeout", "-s", "KILL", str(MN_TIMEOUT_S), *command]
    stderr = shlex.quote(str(state_dir / "mpa-mn.stderr"))
    out = lab.host(MN).cmd(" ".join(shlex.quote(c) for c in command) +
                           f" 2>>{stderr}; echo rc=$?")
    output, _, rc = out.rpartition("rc=")
    documents = json_documents(output)
    return int(rc.strip()), (documents[-1] if documents else {"output": output[-2000:]})


def refusal(document: dict) -> str:
    """The code of the MN's error for its one network ("" if none)."""
    results = document.get("results") or [document]
    return (results[0].get("error") or {}).get("code", "")


def sas_of(controller) -> list[tuple[str, str, str]]:
    return sorted((sa["identity"], sa["network"], sa["state"])
                  for sa in controller.get("/mpa/v1/sas"))


def counter(controller, name: str) -> int:
    return controller.counters().get(name, 0)


def test_eap_tls_in_both_domains_then_a_handover_with_the_msk_s_keys(
        lab, controllers, tmp_path):
    rc, a2 = mpa_mn(lab, tmp_path, "up", "net-a2")
    assert rc == 0, a2
    rc, b1 = mpa_mn(lab, tmp_path, "up", "net-b1")
    assert rc == 0, b1
    assert [(r["domain"], r["identity"]) for r in a2["results"] + b1["results"]] == [
        ("domain-a", IDENTITY), ("domain-b", IDENTITY)]
    assert (IDENTITY, "net-a2", "pre-authenticated") in sas_of(controllers["domain-a"])
    assert sas_of(controllers["domain-b"]) == [(IDENTITY, "net-b1", "pre-authenticated")]
    for domain, controller in controllers.items():
        counters = controller.counters()
        assert counters["pana_eap_relayed"] > 0 and counters["sa_created"] >= 1, domain
    # The handover's signalling is authenticated with the keys from the MSK
    # (a wrong key would be refused, signal_bad_mac): the lab's driver binds
    # the home address in domain-a and moves mn1 into domain-b.
    session = SessionControllers(list(controllers.values()))
    driver = session.driver(lab, str(tmp_path / "driver"), "inband")
    bound = driver.bind_home(MN)
    assert bound.ok, bound.errors
    moved = driver.handover(MN, "ap-b1-1", mode="none")
    assert moved.ok, (moved.errors, moved.stderr)
    assert lab.location[MN].network == "net-b1"
    assert all(counter(c, "signal_bad_mac") == 0 for c in controllers.values())
    back = driver.handover(MN, "ap-a1-1", mode="none")
    assert back.ok, (back.errors, back.stderr)


def test_eap_ttls_pap_in_both_domains(lab, controllers, topology, tmp_path):
    ttls = ttls_path(topology.mobile_nodes[MN].credentials)
    for network, domain in (("net-a2", "domain-a"), ("net-b1", "domain-b")):
        rc, document = mpa_mn(lab, tmp_path, "preauth", network, credentials=ttls)
        assert rc == 0, document
        assert document["results"][0]["domain"] == domain
        assert (IDENTITY, network, "pre-authenticated") in sas_of(controllers[domain])


# -- a capture of one pre-authentication, read back ---------------------------

CAPTURE_START_S = 10


class Capture:
    """dumpcap (tshark's capture tool) writing ``path`` as classic pcap, in
    ``host``'s namespace (None: the root one); stopped with SIGINT, which
    flushes the file."""

    def __init__(self, path: Path, interface: str, bpf: str, host=None):
        command = ["dumpcap", "-q", "-P", "-i", interface, "-f", bpf, "-w", str(path)]
        self.path = path
        self.process = (host.popen(command, stderr=subprocess.PIPE) if host is not None
                        else subprocess.Popen(command, stderr=subprocess.PIPE))
        deadline = time.monotonic() + CAPTURE_START_S
        line = b""
        while b"Capturing on" not in line:
            line = self.process.stderr.readline()
            assert line or self.process.poll() is None, "dumpcap exited"
            assert time.monotonic() < deadline, "dumpcap did not start capturing"

    def stop(self) -> Path:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(CAPTURE_START_S)
        self.process.stderr.close()
        return self.path


def udp_payloads(pcap: Path) -> list[tuple[str, int, str, int, bytes]]:
    """(source, sport, destination, dport, payload) of each UDP/IPv4 frame
    (Ethernet link type, as tcpdump writes an MN's veth and loopback)."""
    from ryu.lib.packet import ipv4, udp
    from ryu.lib.packet import packet as ryu_packet
    data = pcap.read_bytes()
    magic = struct.unpack("<I", data[:4])[0]
    order = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    offset, found = 24, []
    while offset + 16 <= len(data):
        _, _, captured, _ = struct.unpack(order + "IIII", data[offset:offset + 16])
        frame = data[offset + 16:offset + 16 + captured]
        offset += 16 + captured
        decoded = ryu_packet.Packet(frame)
        ip, datagram = decoded.get_protocol(ipv4.ipv4), decoded.get_protocol(udp.udp)
        if ip is None or datagram is None:
            continue
        payload = decoded.protocols[-1]
        payload = payload if isinstance(payload, (bytes, bytearray)) else b""
        found.append((ip.src, datagram.src_port, ip.dst, datagram.dst_port, bytes(payload)))
    return found


def message_authenticator_valid(packet: bytes, secret: bytes,
                                request_authenticator: bytes | None) -> bool:
    """RFC 3579 §3.2: HMAC-MD5 over the packet with the Message-Authenticator
    zeroed (and, in an answer, the Request Authenticator in place of its own)."""
    body, offset, value_at = bytearray(packet), 20, None
    while offset + 2 <= len(body):
        kind, length = body[offset], body[offset + 1]
        if kind == 80 and length == 18:
            value_at = offset + 2
        offset += max(length, 2)
    if value_at is None:
        return False
    given = bytes(body[value_at:value_at + 16])
    body[value_at:value_at + 16] = bytes(16)
    if request_authenticator is not None:
        body[4:20] = request_authenticator
    return hmac.compare_digest(given, hmac.new(secret, bytes(body), hashlib.md5).digest())


def test_a_capture_of_one_pre_authentication_decodes_cleanly(
        lab, controllers, aaa, topology, tmp_path):
    mn = lab.host(MN)
    gateways = {n: str(topology.networks[n].gateway) for n in ("net-a1", "net-b1")}
    ports = sorted({s.settings.auth_port for s in aaa.servers})
    radius_filter = " or ".join(f"udp port {port}" for port in ports)
    pana_capture = Capture(tmp_path / "pana.pcap", mn.defaultIntf().name, "udp port 716",
                           host=mn)
    radius_capture = Capture(tmp_path / "radius.pcap", "lo", radius_filter)
    try:
        # net-b1 from net-a1: pre-authentication (E); net-a1, where mn1 is
        # (as its discovery tells it): an ordinary authentication (no E).
        rc, found = mpa_mn(lab, tmp_path, "discover")
        assert rc == 0, found
        rc, pre = mpa_mn(lab, tmp_path, "preauth", "net-b1")
        assert rc == 0, pre
        rc, here = mpa_mn(lab, tmp_path, "preauth", "net-a1")
        assert rc == 0, here
        # dumpcap writes what it has taken in its own time: until the last
        # exchange (net-a1's final PANA-Auth-Answer from the MN) is in the file.
        wait_for(lambda: sum(gateways["net-a1"] in (src, dst)
                             for src, _, dst, _, _ in udp_payloads(pana_capture.path)) >= 4,
                 CAPTURE_START_S, "net-a1's PANA exchange in the capture")
    finally:
        pana_pcap, radius_pcap = pana_capture.stop(), radius_capture.stop()

    # PANA, with our decoder: every message to and from net-b1's AA has E,
    # none of net-a1's has.
    by_network: dict[str, list] = {"net-a1": [], "net-b1": []}
    for src, _, dst, _, payload in udp_payloads(pana_pcap):
        network = next(n for n, g in gateways.items() if g in (src, dst))
        by_network[network].append(pana.PanaMessage.decode(payload, 65535))
    assert by_network["net-b1"] and by_network["net-a1"], by_network
    assert all(m.has(pana.FLAG_E) for m in by_network["net-b1"])
    assert not any(m.has(pana.FLAG_E) for m in by_network["net-a1"])
    # tshark 4.0's PANA dissector takes E (0x0200) for a reserved bit and
    # marks such a message malformed, so only the messages without E go to
    # it: those must decode cleanly.
    plain = [number for number, (src, _, dst, _, _) in enumerate(udp_payloads(pana_pcap), 1)
             if gateways["net-a1"] in (src, dst)]
    dissected = tshark.dissect(pana_pcap, "pana", decode_as=("udp.port==716,pana",))
    for packet in (p for p in dissected if p.number in plain):
        assert packet.present and not packet.malformed and not packet.warnings, packet

    # RADIUS both ways, for both domains: no malformed packet or warning,
    # every Response Authenticator [correct] (tshark) and every
    # Message-Authenticator valid under the domain's secret (computed here).
    secrets = {s.settings.auth_port: s.settings.secret.encode() for s in aaa.servers}
    requests, checked = {}, 0
    for src, sport, dst, dport, payload in udp_payloads(radius_pcap):
        if dport in secrets:
            requests[(sport, payload[1])] = payload[4:20]
            assert message_authenticator_valid(payload, secrets[dport], None), payload[:4]
        else:
            request = requests[(dport, payload[1])]
            assert message_authenticator_valid(payload, secrets[sport], request), payload[:4]
            checked += 1
    assert checked >= 4, "EAP-TLS takes several round trips in each domain"
    for port, secret in secrets.items():
        # One domain's packets at a time: tshark takes one shared secret.
        packets = [p for p in tshark.dissect(
            radius_pcap, "radius", decode_as=(f"udp.port=={port},radius",),
            # Loopback leaves UDP checksums to an offload that never comes:
            # captured there, every datagram's is partial. Not ours to judge.
            prefs={"radius.shared_secret": secret.decode(), "udp.check_checksum": "FALSE",
                   **tshark.RADIUS_PREFS_VALIDATE})
            if p.present]
        assert packets, f"no RADIUS to or from :{port}"
        for packet in packets:
            assert not packet.malformed and not packet.warnings, (packet.number, packet.warnings)
        answers = [p for p in packets if p.first("radius.code") in ("2", "3", "11")]
        assert answers and all(tshark.radius_verdicts(p)["authenticator"] is True
                               for p in answers), [tshark.radius_verdicts(p) for p in answers]


def test_a_wrong_password_is_refused_and_leaves_no_sa(lab, controllers, topology, tmp_path):
    ttls = Path(ttls_path(topology.mobile_nodes[MN].credentials))
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    text = ttls.read_text()
    password_file = str(ttls.parent / f"{ttls.stem.removesuffix('-ttls')}-domain-b.password")
    assert password_file in text
    credentials = tmp_path / "wrong-ttls.yaml"
    credentials.write_text(text.replace(password_file, str(wrong)))
    domain_b = controllers["domain-b"]
    rejected = counter(domain_b, "pana_authentication_rejected")
    before = sas_of(domain_b)
    rc, document = mpa_mn(lab, tmp_path, "preauth", "net-b1", credentials=str(credentials))
    assert rc != 0 and refusal(document) == "authentication-rejected", document
    assert sas_of(domain_b) == before, "the refused MN got no MPA-SA"
    assert counter(domain_b, "pana_authentication_rejected") == rejected + 1


def test_a_revoked_certificate_is_refused(lab, controllers, aaa, tmp_path):
    # FreeRADIUS reads its CRL when it starts: revoke, then restart it.
    aaa.domains["domain-b"].pki.revoke(IDENTITY)
    server = aaa.server_of("domain-b")
    server.stop()
    server.start()
    domain_b = controllers["domain-b"]
    rejected = counter(domain_b, "pana_authentication_rejected")
    before = sas_of(domain_b)
    rc, document = mpa_mn(lab, tmp_path, "preauth", "net-b1")
    assert rc != 0 and refusal(document) == "authentication-rejected", document
    assert sas_of(domain_b) == before, "the refused MN got no MPA-SA"
    assert counter(domain_b, "pana_authentication_rejected") == rejected + 1
    log = Path(server.settings.log_path).read_text(errors="replace")
    assert "revoked" in log.lower(), log[-2000:]


def test_a_radius_server_that_is_down_is_a_clear_refusal(lab, controllers, aaa, tmp_path):
    server = aaa.server_of("domain-a")
    server.stop()
    domain_a = controllers["domain-a"]
    unreachable = counter(domain_a, "pana_aaa_unreachable")
    before = sas_of(domain_a)
    try:
        rc, document = mpa_mn(lab, tmp_path, "preauth", "net-a2")
    finally:
        server.start()
    assert rc not in (0, 137), document      # refused, not hung until killed
    # PANA has no Result-Code for "AAA unreachable": the PAA answers
    # PANA_AUTHORIZATION_REJECTED, and its own log and counter say why.
    assert refusal(document) == "authorization-rejected", document
    assert sas_of(domain_a) == before, "the refused MN got no MPA-SA"
    assert counter(domain_a, "pana_aaa_unreachable") == unreachable + 1
