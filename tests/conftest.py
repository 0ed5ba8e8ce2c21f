import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from mpa_sdn.config import load_topology  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TOPOLOGY = os.path.join(ROOT, "topologies", "two_domains.yaml")


@pytest.fixture(scope="session")
def topology():
    return load_topology(DEFAULT_TOPOLOGY)
