"""Two domains' FreeRADIUS side by side, as the lab runs them, checked with
eapol_test (hostapd's EAP peer over RADIUS) and with our own RADIUS code:

- EAP-TLS: a domain's good certificate succeeds and the MSK eapol_test
  derives is the one ``mpa_sdn.radius`` reads from the Access-Accept
  (MS-MPPE-Recv-Key, then Send-Key); a revoked certificate and the other
  domain's are refused.
- EAP-TTLS/PAP: the right password succeeds, a wrong one is refused.
- ``RadiusClient`` sends an EAP-Response/Identity and takes the
  Access-Challenge (whose Message-Authenticator it checked); a request under
  a wrong shared secret, and one without a Message-Authenticator, are dropped.
"""

from __future__ import annotations

import collections
import re
import secrets
import shutil
import socket
import struct
import subprocess
import time

import pytest

from mpa_lab.aaa.domain import DomainAaa, running
from mpa_lab.aaa.server import RadiusServerError, check_config
from mpa_sdn import radius
from mpa_sdn.radius_client import RadiusClient, RadiusServer, RetransmitSettings
from support.radius_relay import RadiusRelay

pytestmark = pytest.mark.integration

LOCALHOST = "127.0.0.1"
EAPOL_TEST_TIMEOUT_S = 10
MSK_LINE = re.compile(r"EAP-\S+: Derived key - hexdump\(len=64\): ([0-9a-f ]+)")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


def spec(domain: str) -> DomainAaa:
    return DomainAaa(domain, LOCALHOST, free_udp_port(), LOCALHOST,
                     tls_identities=(f"mn1@{domain}", f"mn2@{domain}"),
                     passwords={f"mn1@{domain}": "right horse"}, revoked=(f"mn2@{domain}",))


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    missing = [b for b in ("freeradius", "eapol_test") if shutil.which(b) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run scripts/install-system.sh as root")
    with running([spec("a.example"), spec("b.example")], tmp_path_factory.mktemp("aaa")) as up:
        yield up


def secret_of(domain) -> str:
    return domain.secret_file.read_text().strip()


def eapol_test(tmp_path, domain, network: str, port: int | None = None):
    conf = tmp_path / "eapol_test.conf"
    conf.write_text("network={\n    key_mgmt=IEEE8021X\n" + network + "}\n")
    run = subprocess.run(
        ["eapol_test", "-c", str(conf), "-a", LOCALHOST,
         "-p", str(port or domain.spec.auth_port), "-s", secret_of(domain),
         "-t", str(EAPOL_TEST_TIMEOUT_S)],
        capture_output=True, text=True, timeout=EAPOL_TEST_TIMEOUT_S + 10,
        stdin=subprocess.DEVNULL)
    return run


def tls_network(domain, client_domain=None, nai="mn1", identity=None) -> str:
    client = client_domain or domain
    issued = client.clients[f"{nai}@{client.spec.domain}"]
    return (f'    eap=TLS\n    identity="{identity or f"{nai}@{client.spec.domain}"}"\n'
            f'    ca_cert="{domain.pki.ca}"\n'
            f'    client_cert="{issued.cert}"\n    private_key="{issued.key}"\n')


def ttls_network(domain, password: str, outer: str | None = None) -> str:
    """EAP-TTLS/PAP as mn1, its outer identity ``outer`` (mn1's own by default:
    the server refuses any other, the AA names the MPA-SA after it)."""
    return (f'    eap=TTLS\n    identity="mn1@{domain.spec.domain}"\n'
            f'    anonymous_identity="{outer or f"mn1@{domain.spec.domain}"}"\n'
            f'    password="{password}"\n    phase2="auth=PAP"\n'
            f'    ca_cert="{domain.pki.ca}"\n')


def succeeded(run) -> bool:
    return run.returncode == 0 and run.stdout.rstrip().endswith("SUCCESS")


def test_each_domain_s_configuration_passes_freeradius_s_check(domains):
    for domain in domains.values():
        result = check_config(domain.server.confdir)
        assert result.returncode == 0, result.stdout + result.stderr


def test_eap_tls_with_a_good_certificate_gives_the_msk_our_codec_reads(domains, tmp_path):
    a = domains["a.example"]
    with RadiusRelay((LOCALHOST, a.spec.auth_port), secret_of(a).encode()) as relay:
        run = eapol_test(tmp_path, a, tls_network(a), port=relay.port)
    assert succeeded(run), run.stdout[-3000:]
    msk = bytes.fromhex(MSK_LINE.search(run.stdout).group(1).replace(" ", ""))
    assert [r.refused for r in relay.answers] == [None] * len(relay.answers)
    kinds = [r.answer.kind for r in relay.answers]
    assert kinds[-1] == "accept" and set(kinds[:-1]) == {"challenge"}
    # RFC 5216's MSK as RADIUS carries it: Recv-Key first, then Send-Key.
    assert relay.answers[-1].answer.msk == msk


REFUSED_TLS = {
    # case: (the network's arguments beyond the domain, what the server's log says)
    "revoked": (dict(nai="mn2"), "certificate revoked"),
    "other domain's": (dict(client_domain="b.example"), "unable to get local issuer certificate"),
    "another NAI's": (dict(identity="mn9@a.example"), "does not match specified value"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_TLS))
def test_eap_tls_with_a_revoked_another_domain_s_or_another_nai_s_certificate_is_refused(
        domains, tmp_path, case):
    a = domains["a.example"]
    arguments, logged = REFUSED_TLS[case]
    if "client_domain" in arguments:
        arguments = dict(arguments, client_domain=domains[arguments["client_domain"]])
    with RadiusRelay((LOCALHOST, a.spec.auth_port), secret_of(a).encode()) as relay:
        run = eapol_test(tmp_path, a, tls_network(a, **arguments), port=relay.port)
    assert not succeeded(run)
    assert relay.answers[-1].answer.kind == "reject"
    assert "accept" not in [r.answer.kind for r in relay.answers]
    assert logged in a.server.settings.log_path.read_text()


def test_eap_ttls_pap_takes_the_right_password_and_refuses_a_wrong_one(domains, tmp_path):
    b = domains["b.example"]
    right = eapol_test(tmp_path, b, ttls_network(b, "right horse"))
    assert succeeded(right), right.stdout[-3000:]
    assert MSK_LINE.search(right.stdout)
    wrong = eapol_test(tmp_path, b, ttls_network(b, "wrong horse"))
    assert not succeeded(wrong) and "CTRL-EVENT-EAP-FAILURE" in wrong.stdout
    # The right password under another outer identity, which the AA would
    # take for the MN's: refused.
    passing_for = eapol_test(tmp_path, b, ttls_network(b, "right horse",
                                                     outer="anonymous@b.example"))
    assert not succeeded(passing_for) and "CTRL-EVENT-EAP-FAILURE" in passing_for.stdout


EAP_IDENTITY = struct.pack("!BBHB", 2, 1, 5 + len(b"mn1@a.example"), 1) + b"mn1@a.example"


def exchange(client: RadiusClient, sock: socket.socket, key, deadline_s: float = 10.0):
    """Send ``key``'s request and retransmit on the client's timers until
    an answer is taken or the deadline passes; (completed, refusals)."""
    refusals = []
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        wait = client.due(time.monotonic())
        if wait is None:
            return None, refusals
        sock.settimeout(max(0.01, min(wait, end - time.monotonic())))
        try:
            data, source = sock.recvfrom(65535)
        except socket.timeout:
            for datagram in client.tick(time.monotonic()).send:
                sock.sendto(datagram.data, (datagram.address, datagram.port))
            continue
        try:
            return client.answer(data, source), refusals
        except radius.RadiusError as e:
            refusals.append(e.reason)
    return None, refusals


def our_client(domain, secret: bytes, counters) -> RadiusClient:
    server = RadiusServer(LOCALHOST, domain.spec.auth_port, secret)
    return RadiusClient([server], RetransmitSettings(initial_rt_s=0.5, max_rt_s=1.0),
                        counters, secrets.token_bytes, secrets.SystemRandom().random,
                        nas_identifier="aa.a.example")


def test_our_client_sends_an_identity_and_takes_the_challenge(domains):
    a = domains["a.example"]
    counters = collections.Counter()
    client = our_client(a, secret_of(a).encode(), counters)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        first = client.send("session-1", time.monotonic(), eap=EAP_IDENTITY,
                            user_name="mn1@a.example", calling_station_id="02-00-00-00-00-01")
        sock.sendto(first.data, (first.address, first.port))
        done, refusals = exchange(client, sock, "session-1")
    assert refusals == [] and done is not None and done.key == "session-1"
    answer = done.answer
    assert answer.kind == "challenge" and answer.state
    # EAP-Request/EAP-TLS Start (RFC 5216 §3.1: type 13, the S flag).
    assert answer.eap[0] == 1 and answer.eap[4] == 13 and answer.eap[5] & 0x20
    assert counters["radius_answers_challenge"] == 1


def answered(sock: socket.socket, sent: list[bytes], probe: bytes, deadline_s: float = 10.0):
    """Send ``sent`` then ``probe`` (a request the server answers); the
    Identifiers answered up to and including the probe's answer.  The server
    reads its socket in order, so whatever it answers of ``sent`` comes back
    before the probe's answer, and what has not come back then was dropped."""
    for data in [*sent, probe]:
        sock.sendto(data, sock.getpeername())
    seen, end = [], time.monotonic() + deadline_s
    while probe[1] not in seen and time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            seen.append(sock.recv(65535)[1])
        except socket.timeout:
            break
    return seen


def without_message_authenticator(identifier: int, eap: bytes | None) -> bytes:
    body = struct.pack("!BB", 1, 15) + b"mn1@a.example"
    if eap is not None:
        body += struct.pack("!BB", 79, len(eap) + 2) + eap
    return struct.pack("!BBH", 1, identifier, 20 + len(body)) + secrets.token_bytes(16) + body


def test_a_wrong_shared_secret_or_no_message_authenticator_gets_no_answer(domains):
    a = domains["a.example"]
    secret = secret_of(a).encode()

    def request(identifier: int, key: bytes) -> bytes:
        return radius.access_request(
            identifier=identifier, authenticator=secrets.token_bytes(16), secret=key,
            eap=EAP_IDENTITY, user_name="mn1@a.example", calling_station_id="02-00-00-00-00-01",
            nas_identifier="aa.a.example")

    dropped = [request(1, b"not the secret"),
               without_message_authenticator(2, EAP_IDENTITY),
               # Without require_message_authenticator this one gets an
               # Access-Reject (tried by hand on FreeRADIUS 3.2.1).
               without_message_authenticator(3, None)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((LOCALHOST, a.spec.auth_port))
        seen = answered(sock, dropped, probe=request(9, secret))
    assert seen == [9]


def test_a_server_that_cannot_start_says_why_and_those_started_are_stopped(tmp_path):
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind((LOCALHOST, 0))
    blocked = DomainAaa("c.example", LOCALHOST, taken.getsockname()[1], LOCALHOST)
    first = spec("d.example")
    with taken, pytest.raises(RadiusServerError) as e:
        with running([first, blocked], tmp_path) as up:
            pytest.fail(f"started on a port in use: {up}")
    # The error names the domain and carries the server's own words.
    assert "c.example" in str(e.value) and "--- " in str(e.value)
    assert re.search(r"(?i)bind|address already in use", str(e.value)), str(e.value)
    # The first server was stopped: its port is free again.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind((LOCALHOST, first.auth_port))
