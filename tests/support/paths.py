"""Where the repository and the files tests read are, wherever the test lives."""

import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
DEFAULT_TOPOLOGY = os.path.join(ROOT, "topologies", "two_domains.yaml")
DATA = ROOT / "tests" / "data"
