"""Fixtures every test folder uses.  What tests import (rigs, fakes, paths)
is in support/; ``tests/`` is on ``sys.path`` through setup.cfg's
``pythonpath``."""

import pytest

from mpa_sdn.config import load_topology
from support.paths import DEFAULT_TOPOLOGY


@pytest.fixture(scope="session")
def topology():
    return load_topology(DEFAULT_TOPOLOGY)
