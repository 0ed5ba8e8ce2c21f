"""A domain's AAA server as the lab writes it: the certificates (CN = the
NAI, a CRL naming the revoked, keys readable by their owner only) and a
FreeRADIUS configuration that needs nothing from /etc/freeradius."""

from __future__ import annotations

import re
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from mpa_lab.aaa import freeradius_config
from mpa_lab.aaa.domain import DomainAaa, prepare


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    spec = DomainAaa("a.example", "127.0.0.1", 18120, "127.0.0.2",
                     tls_identities=("mn1@a.example", "mn2@a.example"),
                     passwords={"mn1@a.example": 'pa"ss\\1'}, revoked=("mn2@a.example",))
    prepared = prepare(spec, tmp_path_factory.mktemp("aaa"), secret="s3cret")
    freeradius_config.write_config(prepared.server.settings, prepared.server.confdir)
    return prepared


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_keys_secret_and_passwords_are_readable_by_their_owner_only(domain):
    private = [*domain.pki.directory.glob("*-key.pem"), domain.secret_file,
               domain.server.confdir / "users", domain.server.confdir / "radiusd.conf"]
    assert len(private) == 7
    assert {p.name: mode(p) for p in private} == {p.name: 0o600 for p in private}


def test_each_client_certificate_names_its_nai_and_is_signed_by_the_domain_s_ca(domain):
    ca = x509.load_pem_x509_certificate(domain.pki.ca.read_bytes())
    for nai, issued in domain.clients.items():
        cert = x509.load_pem_x509_certificate(issued.cert.read_bytes())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == nai
        cert.verify_directly_issued_by(ca)


def test_the_crl_lists_the_revoked_certificate_and_no_other(domain):
    crl = x509.load_pem_x509_crl(domain.pki.crl.read_bytes())
    serial = {nai: x509.load_pem_x509_certificate(i.cert.read_bytes()).serial_number
              for nai, i in domain.clients.items()}
    assert crl.get_revoked_certificate_by_serial_number(serial["mn2@a.example"]) is not None
    assert crl.get_revoked_certificate_by_serial_number(serial["mn1@a.example"]) is None
    both = domain.pki.ca_and_crl.read_text()
    assert both.count("BEGIN CERTIFICATE") == 1 and both.count("BEGIN X509 CRL") == 1


def test_the_configuration_has_one_client_that_must_send_message_authenticators(domain):
    conf = (domain.server.confdir / "radiusd.conf").read_text()
    clients = re.findall(r"^client (\S+) \{(.*?)^\}", conf, re.M | re.S)
    assert [name for name, _ in clients] == ["controller"]
    body = clients[0][1]
    assert "ipaddr = 127.0.0.2" in body and 'secret = "s3cret"' in body
    assert "require_message_authenticator = yes" in body
    assert not re.search(r"^\s*(user|group)\s*=", conf, re.M)
    assert "/etc/freeradius" not in conf


def test_it_listens_where_it_was_told_and_logs_to_the_lab_s_file(domain):
    sites = (domain.server.confdir / "sites.conf").read_text()
    assert re.search(r"ipaddr = 127\.0\.0\.1\s+port = 18120", sites)
    conf = (domain.server.confdir / "radiusd.conf").read_text()
    assert f"file = {domain.directory}/log/radius.log" in conf


def test_eap_tls_checks_the_crl_and_the_certificate_s_name_and_ttls_uses_the_inner_tunnel(domain):
    eap = (domain.server.confdir / "eap.conf").read_text()
    assert f"ca_file = {domain.pki.ca_and_crl}" in eap and "check_crl = yes" in eap
    sections = dict(re.findall(r"^    tls-config (\S+) \{(.*?)^    \}", eap, re.M | re.S))
    used_by_tls = re.search(r"^    tls \{\s+tls = (\S+)", eap, re.M).group(1)
    # Where FreeRADIUS reads it: in the tls-config the EAP-TLS method uses.
    assert "check_cert_cn = %{User-Name}" in sections[used_by_tls]
    assert 'virtual_server = "inner-tunnel"' in eap


def test_the_users_file_quotes_what_it_is_given(domain):
    users = (domain.server.confdir / "users").read_text()
    assert '"mn1@a.example" Cleartext-Password := "pa\\"ss\\\\1"' in users


def test_a_line_break_in_a_value_is_refused():
    with pytest.raises(ValueError):
        freeradius_config.users_file({"mn1": "a\nb"})
