"""The controller process itself: start, answer, stop on SIGTERM, refuse busy
ports and unusable TLS or tokens files, serve HTTPS and OpenFlow over TLS."""

import http.client
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request

import pytest
import yaml

from support.aaa import with_secret_files
from support.paths import DEFAULT_TOPOLOGY
from support.pki import Pki
from support.controller_command import free_ports, controller, output, wait_rest


def test_runs_answers_and_stops_cleanly_on_sigterm(tmp_path):
    ofp, rest = free_ports(2)
    with controller(tmp_path, "--ofp-port", str(ofp), "--rest-port", str(rest)) as (process, log):
        assert "/mpa/v1/networks" in wait_rest(rest, process, log)["paths"]
        # Without a tokens file no token is valid: what needs one is refused.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{rest}/mpa/v1/networks", timeout=5)
        assert refused.value.code == 401
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        text = output(log)
    assert process.returncode == 0, text
    assert "controller stopped" in text
    assert "Traceback" not in text and "uncaught exception" not in text
    assert "REST API on http://" in text
    assert text.count("WARNING mpa_sdn: no API tokens file") == 1


@pytest.mark.parametrize("which", ["--rest-port", "--ofp-port"])
def test_a_busy_port_is_refused(tmp_path, which):
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as eventlet listens
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        ofp, rest = free_ports(2)
        ports = {"--ofp-port": str(ofp), "--rest-port": str(rest), which: str(busy)}
        args = [x for pair in ports.items() for x in pair]
        with controller(tmp_path, *args) as (process, log):
            process.wait(timeout=20)
            text = output(log)
    assert process.returncode == 2
    assert f":{busy} (Address already in use)" in text
    assert "Traceback" not in text


def test_out_of_range_port_override_is_refused(tmp_path):
    with controller(tmp_path, "--rest-port", "70000") as (process, log):
        process.wait(timeout=20)
        text = output(log)
    assert process.returncode == 2
    assert "70000 is out of range" in text


# -- TLS and the API tokens file ----------------------------------------------------

@pytest.mark.parametrize("flags, line", [
    (["--rest-cert", "c.pem"], "--rest-key: is required with --rest-cert"),
    (["--ofp-cert", "c.pem", "--ofp-key", "k.pem"],
     "--ofp-ca: is required with --ofp-cert, --ofp-key"),
    (["--ofp-ca", "ca.pem"], "--ofp-cert: is required with --ofp-ca"),
    (["--api-tokens", ""], "--api-tokens: must not be empty"),
], ids=["rest-cert-alone", "ofp-without-ca", "ofp-ca-alone", "empty-tokens"])
def test_tls_flags_come_in_groups(tmp_path, flags, line):
    with controller(tmp_path, *flags) as (process, log):
        process.wait(timeout=20)
        text = output(log)
    assert process.returncode == 2
    assert text.splitlines()[0] == line, text
    assert "Traceback" not in text


def test_unusable_tls_and_tokens_files_stop_start_up(tmp_path):
    pki = Pki(tmp_path / "pki")
    rest = pki.issue("controller", server=True)
    other = pki.issue("other")
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("version: 1\ntokens: [{name: x}]\n")
    tokens.chmod(0o600)
    missing = tmp_path / "nope.pem"
    ofp, rest_port = free_ports(2)
    with controller(tmp_path, "--ofp-port", str(ofp), "--rest-port", str(rest_port),
                    "--rest-cert", rest.cert, "--rest-key", other.key,
                    "--ofp-cert", rest.cert, "--ofp-key", rest.key, "--ofp-ca", str(missing),
                    "--api-tokens", str(tokens)) as (process, log):
        process.wait(timeout=20)
        text = output(log)
    assert process.returncode == 2
    assert text.splitlines() == [
        f"--rest-key: {other.key}: is not the key of the certificate in {rest.cert}",
        f"--ofp-ca: {missing}: cannot read (No such file or directory)",
        f"--api-tokens: {tokens}: tokens[0].role: one of reader, policy-engine, admin",
        f"--api-tokens: {tokens}: tokens[0].sha256: 64 lowercase hex digits (the token's "
        "SHA-256, not the token)"]


def test_check_config_reads_every_file_named_even_with_a_group_half_given(tmp_path, capsys):
    """--check-config reads the files whatever else is wrong: a missing
    certificate is reported in the same run as its missing key."""
    from apps.launcher import main
    raw = with_secret_files(yaml.safe_load(open(DEFAULT_TOPOLOGY, encoding="utf-8")), tmp_path)
    raw["controller"]["rest_tls_cert"] = "rest.pem"
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["--check-config", str(path)]) == 2
    assert capsys.readouterr().out.splitlines() == [
        "controller.rest_tls_key: is required with rest_tls_cert",
        f"controller.rest_tls_cert: {tmp_path / 'rest.pem'}: cannot read "
        "(No such file or directory)"]


def test_the_runtime_hands_the_tokens_and_tls_contexts_to_the_app(topology):
    from apps import runtime
    tokens, contexts = object(), {"rest": object()}
    runtime.configure(topology, "t.yaml", tokens=tokens, tls=contexts)
    assert runtime.current().tokens is tokens and runtime.current().tls is contexts
    runtime.configure(topology, "t.yaml")
    assert runtime.current().tokens is None and runtime.current().tls == {}


def _https(port, ca, timeout_s=20):
    """GET /mpa/v1/openapi.json over HTTPS once the controller answers:
    (status, TLS version)."""
    context = ssl.create_default_context(cafile=ca)
    deadline = time.monotonic() + timeout_s
    while True:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
        try:
            connection.request("GET", "/mpa/v1/openapi.json")
            response = connection.getresponse()
            response.read()
            return response.status, connection.sock.version()
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        finally:
            connection.close()


def _openflow_first_bytes(port, context=None) -> bytes:
    """What the controller sends first on a new OpenFlow connection (b"" if it
    closes it): a HELLO begins with version 4 and type 0."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        if context is None:
            raw.sendall(bytes.fromhex("0400000800000001"))  # our HELLO, in the clear
            try:
                return raw.recv(8)
            except ConnectionResetError:
                return b""
        with context.wrap_socket(raw) as secure:
            return secure.recv(8)


def test_serves_https_and_openflow_over_tls_only(tmp_path):
    from mpa_protocol.api_tokens import add_token
    pki = Pki(tmp_path / "pki")
    ours = pki.issue("controller", server=True)
    switch = pki.issue("switch-1")
    tokens = str(tmp_path / "tokens.yaml")
    add_token(tokens, "tester", "reader")
    ofp, rest = free_ports(2)
    with controller(tmp_path, "--ofp-port", str(ofp), "--rest-port", str(rest),
                    "--rest-cert", ours.cert, "--rest-key", ours.key,
                    "--ofp-cert", ours.cert, "--ofp-key", ours.key, "--ofp-ca", pki.ca,
                    "--api-tokens", tokens) as (process, log):
        status, version = _https(rest, pki.ca)
        assert status == 200, output(log)
        assert version in ("TLSv1.2", "TLSv1.3")
        with pytest.raises(OSError):  # plain HTTP gets no answer
            urllib.request.urlopen(f"http://127.0.0.1:{rest}/mpa/v1/openapi.json", timeout=5)

        switch_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        switch_context.load_verify_locations(pki.ca)
        switch_context.load_cert_chain(switch.cert, switch.key)
        switch_context.check_hostname = False  # as a switch does: the CA is what counts
        for _ in range(2):  # Ryu alone would serve only the first connection
            hello = _openflow_first_bytes(ofp, switch_context)
            assert hello[:2] == b"\x04\x00", hello
        assert not _openflow_first_bytes(ofp).startswith(b"\x04")

        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        text = output(log)
    assert process.returncode == 0, text
    assert f"REST API on https://127.0.0.1:{rest}/mpa/v1" in text
    assert f"OpenFlow over TLS on 0.0.0.0:{ofp}" in text
    assert text.count("switch certificate switch-1") == 2
    assert "API tokens: 1 from" in text and "no API tokens file" not in text
    assert "Traceback" not in text and "uncaught exception" not in text
