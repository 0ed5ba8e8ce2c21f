"""The MN tests' fixtures: its credentials file, and its world around the real
controller core."""

import pytest

from mpa_mn.credentials import EAP_TLS
from support.aaa import DOMAINS, pkis
from support.mn_world import Core
from support.service_rig import IDENTITY


@pytest.fixture
def credentials_file(tmp_path):
    """An MN credentials file for ``domains`` (every domain of the lab unless
    given), one entry each by ``method``, with the test PKI's files."""
    def write(domains=DOMAINS, method=EAP_TLS, identity=IDENTITY):
        lines = ["version: 1", "credentials:"]
        for domain in domains:
            entry = pkis()[domain].credentials(identity, method)
            files = (("certificate", entry.certificate), ("private_key", entry.private_key)) \
                if method == EAP_TLS else (("password_file", entry.password_file),)
            lines.append(f"  {domain}: {{identity: {identity}, method: {method}, ca: {entry.ca}, "
                         + ", ".join(f"{k}: {v}" for k, v in files)
                         + f", server_name: {entry.server_name}}}")
        path = tmp_path / "mn.yaml"
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return str(path)
    return write


@pytest.fixture
def world():
    world = Core()
    world.attach("ap-a1-1")
    return world
