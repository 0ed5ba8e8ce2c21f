"""The MN tests' fixtures: its credentials file, and its world around the real
controller core."""

import base64

import pytest

from support.mn_world import Core
from support.service_rig import IDENTITY, PSK_A, PSK_B

@pytest.fixture
def credentials_file(tmp_path):
    def write(keys=None):
        keys = keys or {"domain-a": PSK_A, "domain-b": PSK_B}
        path = tmp_path / "mn.yaml"
        path.write_text("version: 1\ncredentials:\n" + "".join(
            f"  {d}: {{identity: {IDENTITY}, key: \"base64:{base64.b64encode(k).decode()}\"}}\n"
            for d, k in keys.items()))
        path.chmod(0o600)
        return str(path)
    return write


@pytest.fixture
def world():
    world = Core()
    world.attach("ap-a1-1")
    return world
