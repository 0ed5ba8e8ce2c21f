"""The MN's credentials file: an identity and an EAP method per domain."""

import os

import pytest

from mpa_mn.credentials import (EAP_TLS, EAP_TTLS_PAP, MnCredentials, load_mn_credentials,
                                read_password)
from mpa_mn.eap_peer import EapTls, EapTtlsPap
from mpa_protocol.schema import ConfigError


def write(tmp_path, text, name="mn.yaml", mode=0o600):
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return str(path)


GOOD = """version: 1
credentials:
  domain-a: {identity: mn1@domain-a, method: eap-tls, ca: a/ca.pem, certificate: a/mn1.pem,
             private_key: a/mn1-key.pem, server_name: radius.domain-a}
  domain-b: {identity: mn1@domain-a, method: eap-ttls-pap, ca: /etc/b-ca.pem,
             password_file: b-password}
"""


def test_each_domain_has_its_identity_method_and_files_made_absolute(tmp_path):
    credentials = load_mn_credentials(write(tmp_path, GOOD))
    a, b = credentials.for_domain("domain-a"), credentials.for_domain("domain-b")
    assert (a.identity, a.method, a.server_name) == ("mn1@domain-a", EAP_TLS, "radius.domain-a")
    assert a.certificate == str(tmp_path / "a" / "mn1.pem")
    assert a.private_key == str(tmp_path / "a" / "mn1-key.pem")
    assert (b.method, b.ca, b.password_file) == (EAP_TTLS_PAP, "/etc/b-ca.pem",
                                                 str(tmp_path / "b-password"))
    assert credentials.for_domain("domain-c") is None


def test_no_repr_shows_a_key_path_or_a_password(tmp_path):
    credentials = load_mn_credentials(write(tmp_path, GOOD))
    text = repr(credentials) + repr(credentials.for_domain("domain-a"))
    assert "mn1-key" not in text and "b-password" not in text
    assert "domain-a: mn1@domain-a (eap-tls)" in text


@pytest.mark.parametrize("text,path,message", [
    ("version: 1\ncredentials: {}\n", "credentials", "at least one"),
    ("version: 2\ncredentials: {}\n", "version", "not a supported version"),
    ("version: 1\ncredentials:\n  d: {identity: mn1@d, method: eap-md5, ca: c}\n",
     "credentials.d.method", "not one of eap-tls, eap-ttls-pap"),
    ("version: 1\ncredentials:\n  d: {identity: mn1@d, method: eap-tls, ca: c}\n",
     "credentials.d.certificate", "is required"),
    ("version: 1\ncredentials:\n  d: {identity: mn1@d, method: eap-ttls-pap, ca: c}\n",
     "credentials.d.password_file", "is required"),
    ("version: 1\ncredentials:\n  d: {identity: nobody, method: eap-ttls-pap, ca: c,"
     " password_file: p}\n", "credentials.d.identity", "not a network access identifier"),
    ("version: 1\ncredentials:\n  d: {identity: mn1@d, method: eap-ttls-pap, ca: c,"
     " password_file: p, key: base64:AAAA}\n", "credentials.d.key", "unknown key"),
])
def test_errors_carry_the_key_path(tmp_path, text, path, message):
    with pytest.raises(ConfigError) as err:
        load_mn_credentials(write(tmp_path, text))
    assert any(p == path and message in m for p, m in err.value.errors), err.value.errors


def test_an_unreadable_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_mn_credentials(str(tmp_path / "missing.yaml"))
    assert "cannot read" in str(err.value.errors)


def test_a_password_is_the_first_line_and_a_readable_file_is_warned_about(tmp_path, caplog):
    path = write(tmp_path, "s3cret pass\nignored\n", "password", mode=0o644)
    with caplog.at_level("WARNING", logger="mpa_mn.credentials"):
        assert read_password(path) == "s3cret pass"
    assert "chmod 600" in caplog.text and "s3cret" not in caplog.text
    with pytest.raises(ConfigError):
        read_password(write(tmp_path, "\n", "empty"))
    with pytest.raises(ConfigError):
        read_password(write(tmp_path, "x" * 300 + "\n", "long"))


def test_each_method_becomes_its_eap_method(tmp_path):
    (tmp_path / "b-password").write_text("pw\n")
    os.chmod(tmp_path / "b-password", 0o600)
    credentials = load_mn_credentials(write(tmp_path, GOOD))
    tls = credentials.for_domain("domain-a").eap_method()
    ttls = credentials.for_domain("domain-b").eap_method()
    assert isinstance(tls, EapTls) and tls.server_name == "radius.domain-a"
    assert isinstance(ttls, EapTtlsPap) and ttls.username == "mn1@domain-a"
    assert isinstance(credentials, MnCredentials)
