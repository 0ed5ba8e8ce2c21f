"""A self-contained FreeRADIUS 3 configuration directory for one domain.

Nothing under /etc/freeradius is read or written: radiusd.conf, the users
file and the module and site definitions are generated into one directory,
and only Debian's dictionaries are used (FreeRADIUS loads them from its
``dictdir``, ``/usr/share/freeradius``).  The server

- listens on one address and authentication port;
- knows one client, the domain's controller (its Authentication Agent), with
  its shared secret and ``require_message_authenticator = yes`` (a request
  without Message-Authenticator is dropped: the BlastRADIUS lesson);
- runs EAP-TLS (the domain's CA, its server certificate, the CRL checked, a
  client certificate required whose CN is the User-Name, the NAI) and
  EAP-TTLS whose inner tunnel checks PAP passwords against a users file;
- logs to a file the lab keeps, and answers Status-Server (RFC 5997), which
  is how the lab knows it is ready.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mpa_lab.aaa.pki import write_private

FREERADIUS_LIBDIR = "/usr/lib/freeradius"


@dataclass(frozen=True)
class ServerSettings:
    """What one domain's FreeRADIUS is configured with."""
    domain: str
    address: str                  # where it listens
    auth_port: int
    client_address: str           # the controller's address, its only client
    secret: str                   # shared with that client
    ca_and_crl: Path              # the CA certificate followed by its CRL (PEM)
    server_cert: Path
    server_key: Path
    log_path: Path
    # identity (NAI) -> password, for EAP-TTLS/PAP
    users: dict[str, str] = field(default_factory=dict)
    tls_max_version: str = "1.2"
    # How long an EAP conversation may pause between rounds (FreeRADIUS's timer_expire).
    eap_timer_expire_s: int = 60
    max_eap_sessions: int = 4096


def _quoted(text: str) -> str:
    """A FreeRADIUS double-quoted string (backslash and quote escaped)."""
    if any(ch in text for ch in "\n\r\0"):
        raise ValueError(f"control character in configuration value {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def radiusd_conf(settings: ServerSettings, confdir: Path) -> str:
    # Long: one template, the file as FreeRADIUS reads it from top to bottom.
    s = settings
    return f"""\
# Generated for domain {s.domain}: do not edit, the lab writes it again.
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
confdir = {confdir}
raddbdir = {confdir}
modconfdir = {confdir}
certdir = {confdir}
cadir = {confdir}
run_dir = {confdir}/run
db_dir = {confdir}
libdir = {FREERADIUS_LIBDIR}
name = radiusd
pidfile = ${{run_dir}}/radiusd.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 16384
hostname_lookups = no
proxy_requests = no

log {{
    destination = files
    file = {s.log_path}
    colourise = no
    stripped_names = no
    auth = yes
    auth_badpass = no
    auth_goodpass = no
}}

security {{
    allow_core_dumps = no
    max_attributes = 200
    # The lab's clients retransmit on their own timers; a delayed reject
    # only slows the tests.
    reject_delay = 0
    status_server = yes
}}

thread pool {{
    start_servers = 2
    max_servers = 8
    min_spare_servers = 1
    max_spare_servers = 4
    max_requests_per_server = 0
}}

client controller {{
    ipaddr = {s.client_address}
    secret = {_quoted(s.secret)}
    require_message_authenticator = yes
    shortname = controller
}}

modules {{
    always ok {{
        rcode = ok
    }}
    always reject {{
        rcode = reject
    }}
    pap {{
    }}
    files {{
        filename = {confdir}/users
    }}
    $INCLUDE {confdir}/eap.conf
}}

$INCLUDE {confdir}/sites.conf
"""


def _tls_config(name: str, settings: ServerSettings, extra: str = "") -> str:
    s = settings
    return f"""\
    tls-config {name} {{
        private_key_file = {s.server_key}
        certificate_file = {s.server_cert}
        # The CA and its CRL in one file; check_crl makes a revoked client
        # certificate fail the handshake.
        ca_file = {s.ca_and_crl}
        check_crl = yes
        cipher_list = "DEFAULT"
        ecdh_curve = "prime256v1"
        tls_min_version = "1.2"
        tls_max_version = "{s.tls_max_version}"{extra}
        cache {{
            enable = no
        }}
        ocsp {{
            enable = no
        }}
    }}
"""


def eap_conf(settings: ServerSettings) -> str:
    s = settings
    # A method's section with ``tls = NAME`` takes its TLS settings from
    # that tls-config only: a check_cert_cn beside it is ignored without a
    # word (FreeRADIUS 3.2.1 let mn1's certificate in as mn9).  EAP-TLS has
    # a tls-config of its own, where the certificate must name the identity
    # that asked, so no one presents another MN's certificate as their own.
    return f"""\
eap {{
    default_eap_type = tls
    timer_expire = {s.eap_timer_expire_s}
    ignore_unknown_eap_types = no
    max_sessions = {s.max_eap_sessions}

{_tls_config("tls-certificate", s, chr(10) + "        check_cert_cn = %{User-Name}")}
{_tls_config("tls-tunnel", s)}
    tls {{
        tls = tls-certificate
    }}

    ttls {{
        tls = tls-tunnel
        copy_request_to_tunnel = yes
        # The inner tunnel's reply (its User-Name: who the password was
        # checked for) goes into the Access-Accept.
        use_tunneled_reply = yes
        virtual_server = "inner-tunnel"
        require_client_cert = no
    }}
}}
"""


SITES_CONF = """\
server default {
    authorize {
        # Not EAP: no Auth-Type is set, and the request is rejected.
        eap {
            ok = return
        }
    }
    authenticate {
        Auth-Type EAP {
            eap
        }
    }
    post-auth {
        # The identity authenticated, for the AA to check against the EAP
        # identity it saw (RFC 2865 §5.1): EAP-TTLS's inner one, from the
        # tunnel's reply, else the certificate's (checked against User-Name).
        update reply {
            &User-Name = &request:User-Name
        }
        Post-Auth-Type REJECT {
            eap
        }
    }
}

server inner-tunnel {
    authorize {
        # The outer identity, in the clear, is what the AA makes the MPA-SA
        # for: it must be the one whose password is checked, or a subscriber
        # could authenticate as itself and be taken for someone else.
        if (&outer.request:User-Name != &request:User-Name) {
            reject
        }
        files
        pap
    }
    authenticate {
        Auth-Type PAP {
            pap
        }
    }
    post-auth {
        update reply {
            &User-Name := &request:User-Name
        }
    }
}
"""


def listen_conf(settings: ServerSettings) -> str:
    return f"""\
listen {{
    type = auth
    ipaddr = {settings.address}
    port = {settings.auth_port}
    virtual_server = default
}}
"""


def users_file(users: dict[str, str]) -> str:
    lines = ["# identity Cleartext-Password, for EAP-TTLS/PAP in the inner tunnel"]
    for identity, password in sorted(users.items()):
        lines.append(f"{_quoted(identity)} Cleartext-Password := {_quoted(password)}")
    return "\n".join(lines) + "\n"


def write_config(settings: ServerSettings, confdir: Path) -> Path:
    """Write the configuration into ``confdir`` (created); return it.

    The files holding the shared secret and the passwords are 0600.
    """
    confdir = Path(confdir).resolve()
    (confdir / "run").mkdir(parents=True, exist_ok=True)
    write_private(confdir / "radiusd.conf", radiusd_conf(settings, confdir).encode())
    (confdir / "eap.conf").write_text(eap_conf(settings))
    (confdir / "sites.conf").write_text(listen_conf(settings) + SITES_CONF)
    write_private(confdir / "users", users_file(settings.users).encode())
    os.makedirs(Path(settings.log_path).parent, exist_ok=True)
    return confdir
