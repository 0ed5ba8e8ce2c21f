"""OpenFlow over TLS from Open vSwitch, and the REST API over HTTPS, on the
real controller process: switches and clients that do not speak TLS, or
show no certificate the CA signed, get nothing."""

import contextlib
import http.client
import signal
import socket
import ssl
import subprocess
import time

import pytest

from support.lab_rig import wait_for
from support.controller_command import MPA_CONTROLLER, free_ports
from support.pki import Pki

pytestmark = pytest.mark.integration

BRIDGE = "mpa-tls0"
DPID = 0xdeadbeef01  # not in the topology: the controller connects it and leaves it alone
OPENFLOW_HELLO = bytes.fromhex("0400000800000001")


def vsctl(*args) -> str:
    return subprocess.run(["ovs-vsctl", "--timeout=10", *args], capture_output=True, text=True,
                          check=True, stdin=subprocess.DEVNULL).stdout.strip()


@contextlib.contextmanager
def ovs_ssl(key: str, cert: str, ca: str):
    """Open vSwitch's one SSL configuration set to ours, and put back as it was."""
    before = {}
    for line in vsctl("get-ssl").splitlines():
        name, _, value = line.partition(":")
        before[name.strip()] = value.strip()
    vsctl("set-ssl", key, cert, ca)
    try:
        yield
    finally:
        if before.get("Private key"):
            vsctl("set-ssl", before["Private key"], before["Certificate"], before["CA Certificate"])
        else:
            vsctl("del-ssl")


@contextlib.contextmanager
def bridge(controller_target: str):
    vsctl("--if-exists", "del-br", BRIDGE)  # left by a killed run
    vsctl("add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev",
          "protocols=OpenFlow13", "fail_mode=secure", f"other-config:datapath-id={DPID:016x}")
    try:
        vsctl("set-controller", BRIDGE, controller_target)
        yield
    finally:
        vsctl("--if-exists", "del-br", BRIDGE)


def connected() -> bool:
    return vsctl("get", "controller", BRIDGE, "is_connected") == "true"


@contextlib.contextmanager
def tls_controller(tmp_path, pki, ofp_port, rest_port, tokens, config):
    ours = pki.issue("controller", server=True)
    log_path = tmp_path / "controller.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [MPA_CONTROLLER, "--config", config, "--ofp-port", str(ofp_port),
             "--rest-port", str(rest_port), "--state-db", str(tmp_path / "state.db"),
             "--rest-cert", ours.cert, "--rest-key", ours.key,
             "--ofp-cert", ours.cert, "--ofp-key", ours.key, "--ofp-ca", pki.ca,
             "--api-tokens", tokens],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process, log_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def https_get(port: int, ca: str, path: str):
    """(status, negotiated TLS version), or raises OSError."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1", port, context=ssl.create_default_context(cafile=ca), timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status, connection.sock.version()
    finally:
        connection.close()


def wait_https(port, ca, process, log_path, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, log_path.read_text()
        try:
            return https_get(port, ca, "/mpa/v1/openapi.json")  # served without a token
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise AssertionError("REST never answered:\n" + log_path.read_text())
            time.sleep(0.1)


def first_bytes(port: int, context: ssl.SSLContext | None = None) -> bytes:
    """What the controller sends first on a new OpenFlow connection after our
    HELLO (b"" if it closes the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            if context is None:
                raw.sendall(OPENFLOW_HELLO)
                return raw.recv(8)
            with context.wrap_socket(raw) as secure:
                secure.sendall(OPENFLOW_HELLO)
                return secure.recv(8)
        except ConnectionResetError:
            return b""


def test_ovs_connects_over_tls_and_nothing_else_gets_in(prerequisites, tmp_path, aaa,
                                                        lab_topology_file):
    from mpa_protocol.api_tokens import add_token
    pki = Pki(tmp_path / "pki")
    switch = pki.issue("switch-tls")
    tokens = str(tmp_path / "tokens.yaml")
    add_token(tokens, "integration", "reader")
    ofp_port, rest_port = free_ports(2)

    with tls_controller(tmp_path, pki, ofp_port, rest_port, tokens,
                        lab_topology_file) as (process, log_path):
        status, version = wait_https(rest_port, pki.ca, process, log_path)
        assert status == 200
        assert version in ("TLSv1.2", "TLSv1.3")

        with ovs_ssl(switch.key, switch.cert, pki.ca), bridge(f"ssl:127.0.0.1:{ofp_port}"):
            wait_for(connected, 20, f"{BRIDGE} to connect over TLS")
            wait_for(lambda: f"dpid={DPID:016x} connected" in log_path.read_text(), 10,
                     "the controller to see the switch's features")
            text = log_path.read_text()
            assert any(f"OpenFlow: {v} from 127.0.0.1:" in text and "certificate switch-tls"
                       in text for v in ("TLSv1.2", "TLSv1.3")), text

            # No TLS, or TLS without a certificate: no HELLO from the controller.
            assert not first_bytes(ofp_port).startswith(b"\x04")
            anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            anonymous.load_verify_locations(pki.ca)
            anonymous.check_hostname = False
            try:
                reply = first_bytes(ofp_port, anonymous)
            except ssl.SSLError as exc:  # the server's alert: certificate required
                reply = str(exc).encode()
            assert not reply.startswith(b"\x04"), reply
            assert connected(), "the switch stays connected meanwhile"

        with pytest.raises(OSError):  # http.client's RemoteDisconnected is one
            connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=5)
            try:
                connection.request("GET", "/mpa/v1/openapi.json")
                connection.getresponse()
            finally:
                connection.close()

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, log_path.read_text()
    text = log_path.read_text()
    assert "Traceback" not in text and "uncaught exception" not in text, text
    assert "REST API on https://" in text
