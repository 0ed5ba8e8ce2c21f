"""`mpa-lab up --script`: the lab's CLI, run as a user would."""

import os
import subprocess
import sys

import pytest

from integration.conftest import OFP_PORT, REST_PORT

pytestmark = pytest.mark.integration

MPA_LAB = os.path.join(os.path.dirname(sys.executable), "mpa-lab")


def test_move_and_ping_from_the_lab_cli(prerequisites, tmp_path):
    script = tmp_path / "commands"
    script.write_text("poas\n"
                      "move mn1 ap-b1-1\n"
                      "move mn1 nowhere\n"
                      "mn1 ping -c 1 -W 2 10.0.0.10\n"
                      "cn1 ping -c 1 -W 2 10.2.1.199\n")
    result = subprocess.run([MPA_LAB, "up", "--script", str(script), "--out", str(tmp_path),
                             "--ofp-port", str(OFP_PORT), "--rest-port", str(REST_PORT)],
                            capture_output=True, text=True, timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "ap-a1-1    net-a1   ar-a1:3    mn1" in out
    assert "mn1 is at ap-b1-1 (net-b1) with 10.2.1.199" in out
    assert "move: unknown PoA nowhere" in out
    assert out.count("1 packets transmitted, 1 received") == 2, out
    assert "Lab and controller stopped." in out
    assert "Traceback" not in out
