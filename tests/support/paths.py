"""Where the repository and the files tests read are, wherever the test lives."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_TOPOLOGY = os.path.join(ROOT, "topologies", "two_domains.yaml")
DATA = os.path.join(ROOT, "tests", "data")
