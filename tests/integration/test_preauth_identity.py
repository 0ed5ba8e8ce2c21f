"""The identity an MPA-SA is made for is the one the domain's RADIUS server
authenticated: the real core (its PANA agent and RADIUS client) against a
real FreeRADIUS as the lab configures it, the MN's PaC and EAP peer in this
process, RADIUS over the loopback.

With EAP-TTLS the identity the AA sees (the outer one, in the clear) is not
the one the password is checked for (the inner one): the server refuses a
mismatch, and says which identity it authenticated in the Access-Accept,
which the AA checks too."""

from __future__ import annotations

import os
import shutil
import socket
import time

import pytest

from mpa_lab.aaa.domain import DomainAaa, running
from mpa_mn.eap_peer import EapPeer, EapTls, EapTtlsPap
from mpa_mn.pana_client import PanaClient
from mpa_sdn.config import load_topology
from mpa_sdn.controller import Controller
from mpa_sdn.pana_agent import PanaReply
from mpa_sdn.radius_client import Datagram, RadiusServer
from mpa_sdn.service import INBAND, Origin
from mpa_sdn.store import MemoryStore
from support.paths import DEFAULT_TOPOLOGY

pytestmark = pytest.mark.integration

LOCALHOST = "127.0.0.1"
MN1, MN2 = "mn1@domain-a", "mn2@domain-a"
PASSWORDS = {MN1: "mn1's password", MN2: "mn2's password"}


@pytest.fixture(scope="module")
def aaa(tmp_path_factory):
    if shutil.which("freeradius") is None:
        pytest.fail("freeradius missing: run scripts/install-system.sh as root")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOCALHOST, 0))
        port = probe.getsockname()[1]
    spec = DomainAaa("domain-b", LOCALHOST, port, LOCALHOST, tls_identities=(MN1, MN2),
                     passwords=PASSWORDS)
    with running([spec], tmp_path_factory.mktemp("aaa")) as up:
        yield up["domain-b"]


def preauthenticate(aaa, method) -> tuple[Controller, PanaClient]:
    """One PANA session with net-b1's AA, RADIUS to the real server."""
    topology = load_topology(DEFAULT_TOPOLOGY)
    secret = aaa.secret_file.read_bytes().split(b"\n")[0]
    core = Controller(topology, store=MemoryStore(), wall_offset=time.time(), radius_servers={
        "domain-b": [RadiusServer(LOCALHOST, aaa.spec.auth_port, secret)]})
    client = PanaClient(EapPeer(MN1, method), True)
    origin = Origin(INBAND, "10.1.1.10", "net-b1", None)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOCALHOST, 0))
        sock.settimeout(5.0)
        pending = core.mpa.pana(client.initiation(), origin, 40716, 10.0)
        while pending and not client.done:
            out = pending.pop(0)
            if isinstance(out, Datagram):
                sock.sendto(out.data, (out.address, out.port))
                pending += core.mpa.radius(*sock.recvfrom(4096), 10.0)
            elif isinstance(out, PanaReply):
                answer = client.receive(out.data)
                if answer is not None:
                    pending += core.mpa.pana(answer, origin, 40716, 10.0)
    return core, client


def password_file(tmp_path, text):
    path = tmp_path / "password"
    path.write_text(text + "\n")
    os.chmod(path, 0o600)
    return str(path)


def test_eap_tls_gives_the_sa_to_the_certificate_s_identity(aaa):
    issued = aaa.clients[MN1]
    core, client = preauthenticate(aaa, EapTls(issued.cert, issued.key, aaa.pki.ca))
    assert client.result == "success"
    [sa] = core.mpa.aa.sas.values()
    assert sa.identity == MN1 and sa.domain == "domain-b"


def test_eap_ttls_with_the_outer_identity_of_the_inner_one_succeeds(aaa):
    core, client = preauthenticate(aaa, EapTtlsPap(MN1, PASSWORDS[MN1], aaa.pki.ca))
    assert client.result == "success"
    assert [sa.identity for sa in core.mpa.aa.sas.values()] == [MN1]


def test_eap_ttls_with_another_outer_identity_is_refused(aaa):
    # mn2 knows its own password and tries to pass for mn1 in the clear.
    core, client = preauthenticate(aaa, EapTtlsPap(MN2, PASSWORDS[MN2], aaa.pki.ca,
                                                   anonymous_identity=MN1))
    assert client.result == "authentication-rejected"
    assert core.mpa.aa.sas == {}
    assert core.counters["pana_authentication_rejected"] == 1
