"""`mpa-lab run`, as a user runs it: every mode of a small scenario in the
real lab, results.json, the table and the plots; and Ctrl-C in the middle
of a run leaves nothing behind."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from support.paths import DEFAULT_TOPOLOGY
from support.lab_rig import OFP_PORT, REST_PORT, apart, wait_for, write_test_topology
from mpa_mn.dad import DadSettings
from mpa_lab.experiment.handover_driver import Lines
from mpa_lab.experiment.scenario import MODES

pytestmark = pytest.mark.integration

MPA_LAB = os.path.join(os.path.dirname(sys.executable), "mpa-lab")
BRIDGES = ("core", "cn-ar", "ar-a1", "ar-a2", "ar-b1", "ap-b1")
# Shortened RFC 5227 timings keep the reactive handovers to about a second.
FAST_DAD = DadSettings(probe_num=2, probe_wait_s=0.1, probe_min_s=0.2, probe_max_s=0.3,
                       announce_wait_s=0.3)
HANDOVER_FIELDS = {"index", "from", "to", "sent", "received", "lost", "duplicates",
                   "reordered", "interruption_ms", "buffered", "signal_to_flows_ms"}
SUMMARY_FIELDS = {"sent", "received", "lost", "duplicates", "reordered",
                  "interruption_ms_p50", "interruption_ms_max", "one_way_delay_ms_p50",
                  "jitter_ms"}
# Ctrl-C -> the runner has torn the lab down and written results.json.
TEARDOWN_S = 60
# How long a whole run may take (a fresh controller and lab per session:
# about a minute for every mode, here).  Past it the run is interrupted and
# given TEARDOWN_S to clean up, all within pytest-timeout's 300 s (setup.cfg),
# which would end the test with the lab still up.
RUN_ALL_MODES_S = 200
RUN_TWO_MNS_S = 120
RUN_SLOW_STREAM_S = 150
RUN_SHORT_S = 90


def scenario(tmp_path, modes: str, count: int) -> str:
    topology = write_test_topology(DEFAULT_TOPOLOGY, tmp_path / "two_domains.yaml")
    dad = ", ".join(f"{k}: {v}" for k, v in dataclasses.asdict(FAST_DAD).items())
    path = tmp_path / "small.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        name: small
        topology: {topology}
        traffic: {{from: cn1, rate_pps: 100}}
        mobile_nodes:
          mn1: {{targets: [ap-a2-1, ap-b1-1, ap-a1-1], standby: {{poas: [ap-b1-1]}}}}
        modes: {modes}
        handovers: {{count: {count}, interval_s: 0.5, warmup_s: 0.5}}
        reactive: {{dad: {{{dad}}}}}
        """))
    return str(path)


def run_scenario(tmp_path, topology: str, body: str, timeout_s: float) -> tuple[str, dict]:
    """A scenario (``body``: its YAML after the version and the topology)
    run to its end with ``mpa-lab run``: what it printed, and results.json."""
    path = tmp_path / "scenario.yaml"
    path.write_text(f"version: 1\ntopology: {topology}\n" + textwrap.dedent(body))
    out = tmp_path / "out"
    status, text = run_to_end(run_command(str(path), out), timeout_s)
    assert status == 0, text
    return text, json.loads((out / "results.json").read_text())


def run_command(path: str, out) -> list[str]:
    # No standard input at all, as CI may start it.
    return ["bash", "-c", 'exec "$@" 0<&-', "bash", MPA_LAB, "run", path, "--out", str(out),
            "--ofp-port", str(OFP_PORT), "--rest-port", str(REST_PORT)]


def start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def interrupt(process: subprocess.Popen) -> bytes:
    """Ctrl-C, then what it printed until it ended; killed only if it does not
    end within TEARDOWN_S (leaving the lab up)."""
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=TEARDOWN_S)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[0] + b"\n[killed: no end within the teardown's time]"


def run_to_end(command: list[str], timeout_s: float) -> tuple[int, str]:
    """Its exit status and output (stdout and stderr); past ``timeout_s``
    it is interrupted, so that it tears the lab down, and the test fails."""
    process = start(command)
    try:
        out = process.communicate(timeout=timeout_s)[0]
    except subprocess.TimeoutExpired:
        out = interrupt(process)
        pytest.fail(f"mpa-lab run did not end within {timeout_s} s; interrupted:\n"
                    + out.decode(errors="replace"))
    return process.returncode, out.decode(errors="replace")


def nothing_left() -> bool:
    bridges = subprocess.run(["ovs-vsctl", "list-br"], capture_output=True,
                             text=True).stdout.split()
    controllers = subprocess.run(["pgrep", "-f", f"mpa-controller.*--ofp-port {OFP_PORT}"],
                                 capture_output=True).returncode == 0
    return not set(bridges) & set(BRIDGES) and not controllers


def test_every_mode_runs_and_is_compared(prerequisites, tmp_path):
    out = tmp_path / "out"
    status, text = run_to_end(
        run_command(scenario(tmp_path, f"[{', '.join(MODES)}]", 2), out), RUN_ALL_MODES_S)
    assert status == 0, text
    assert "Traceback" not in text
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] is True and results["scenario"] == "small"
    assert {"commit", "started_at", "modes"} <= set(results)
    assert list(results["modes"]) == list(MODES)
    for mode, body in results["modes"].items():
        assert len(body["handovers"]) == 2, mode
        for row in body["handovers"]:
            assert HANDOVER_FIELDS <= set(row), (mode, set(row))
            assert row["ok"], (mode, row["errors"], row.get("stderr"))
            assert row["sent"] > 0 and row["received"] + row["lost"] == row["sent"]
        assert SUMMARY_FIELDS <= set(body["summary"]), mode
        assert body["summary"]["received"] > 0
    modes = results["modes"]
    # MPA with buffering and copy-and-forward lose nothing.  (Bicasting
    # cannot save what is in flight to the old PoA while the lab's link
    # switch breaks before it makes: RFC 6252 §7.6.1.)
    for mode in ("mpa_buffer", "mpa_copy_forward"):
        assert [row["lost"] for row in modes[mode]["handovers"]] == [0, 0], mode
    for row in modes["mpa_buffer"]["handovers"]:
        assert row["buffered"] is not None and row["signal_to_flows_ms"] is not None
    # The reactive MN cannot receive before its DAD is over.
    for row in modes["reactive"]["handovers"]:
        assert row["interruption_ms"] >= FAST_DAD.minimum_s * 1000
        assert row["lost"] > 0
    # The table and the plots.
    for label in ("reactive (no MPA)", "mpa (no buffering)", "mpa_buffer", "mpa_copy_forward",
                  "mpa_bicast", "RFC 6252 Appendix C.5", "times mpa_buffer's"):
        assert label in text
    assert sorted(os.path.basename(p) for p in results["plots"]) == sorted(
        [f"timeline-{m}.png" for m in MODES] + ["timelines.png", "summary.png", "domains.png"])
    for path in results["plots"]:
        assert os.path.getsize(path) > 10_000
        assert path in text
    assert nothing_left()


def test_slower_than_the_controllers_round_trip_nothing_is_lost_duplicated_or_reordered(
        prerequisites, tmp_path):
    """Buffered and copy-and-forward handovers, counted at the receiver.
    Zero reordered is what the cut guarantees while packets are further
    apart than the controller's round trip (docs/architecture.md,
    "Draining"): at 20 packets/s they are 50 ms apart, and a 100 ms link
    layer keeps two or so in the buffer each time."""
    topology = write_test_topology(DEFAULT_TOPOLOGY, tmp_path / "two_domains.yaml")
    _, results = run_scenario(tmp_path, topology, """\
        traffic: {from: cn1, rate_pps: 20}
        link_layer_ms: 100
        mobile_nodes:
          mn1: {targets: [ap-a2-1, ap-b1-1, ap-a1-1], standby: {poas: [ap-b1-1]}}
        modes: {mpa_buffer: {handovers: 3}, mpa_copy_forward: {handovers: 3}}
        handovers: {interval_s: 0.5, warmup_s: 0.5}
        """, RUN_SLOW_STREAM_S)
    modes = results["modes"]
    assert list(modes) == ["mpa_buffer", "mpa_copy_forward"]
    for mode, body in modes.items():
        rows = body["handovers"]
        assert len(rows) == 3 and all(r["ok"] for r in rows), (mode, [r["errors"] for r in rows])
        counts = [(r["lost"], r["duplicates"], r["reordered"]) for r in rows]
        assert counts == [(0, 0, 0)] * 3, (mode, counts)
        summary = body["summary"]
        assert (summary["lost"], summary["duplicates"], summary["reordered"]) == (0, 0, 0)
        assert summary["received"] == summary["sent"] > 0
    assert sum(r["buffered"] or 0 for r in modes["mpa_buffer"]["handovers"]) > 0
    assert nothing_left()


def test_with_poa_ports_that_stay_up_a_ping_pong_comes_back_and_loses_nothing(
        prerequisites, tmp_path):
    """An access point's port stays up as the MN leaves: the controller
    learns of each departure from the MN's arrival where it pre-switched to,
    so mn1 can come back to a network it left (the third and fourth
    handovers), and the buffer still loses nothing."""
    topology = write_test_topology(DEFAULT_TOPOLOGY, tmp_path / "two_domains.yaml")
    _, results = run_scenario(tmp_path, topology, """\
        traffic: {from: cn1, rate_pps: 200}
        link_layer_ms: 4
        poa_ports: stay_up
        mobile_nodes:
          mn1: {targets: [ap-a2-1, ap-a1-1]}
        modes: {mpa_buffer: {handovers: 4}}
        handovers: {interval_s: 0.5, warmup_s: 0.5}
        """, RUN_SHORT_S)
    assert results["settings"]["poa_ports"] == "stay_up"
    body = results["modes"]["mpa_buffer"]
    rows = body["handovers"]
    assert len(rows) == 4 and all(r["ok"] for r in rows), [r["errors"] for r in rows]
    assert [(r["lost"], r["duplicates"]) for r in rows] == [(0, 0)] * 4
    assert body["summary"]["received"] == body["summary"]["sent"] > 0
    [session] = body["sessions"]
    counters = session["counters"]
    assert counters.get("host_forgotten_link_down", 0) == 0, "no port went down"
    assert counters["host_forgotten_arrived_elsewhere"] == 4
    assert nothing_left()


def test_ctrl_c_tears_the_lab_down_and_keeps_what_was_measured(prerequisites, tmp_path):
    out = tmp_path / "out"
    process = start(run_command(scenario(tmp_path, "[mpa_buffer]", 50), out))
    lines, seen = Lines(process.stdout), []
    try:
        deadline = time.monotonic() + 120
        while not any(b"mpa_buffer 2/50 done" in line for line in seen):
            line = lines.line(deadline)
            assert line is not None, b"\n".join(seen).decode(errors="replace")
            seen.append(line)
        process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + TEARDOWN_S
        while (line := lines.line(deadline)) is not None:
            seen.append(line)
        if lines.eof:
            seen.append(lines.rest())   # a last line without its newline
        text = b"\n".join(seen).decode(errors="replace")
        assert lines.eof, f"no end within {TEARDOWN_S} s of Ctrl-C:\n{text}"
        process.wait(TEARDOWN_S)
    finally:
        if process.poll() is None:
            interrupt(process)
    assert process.returncode == 130, text
    assert "interrupted" in text and "(incomplete)" in text
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] is False and results["stopped"] == "interrupted"
    assert len(results["modes"]["mpa_buffer"]["handovers"]) >= 2
    wait_for(nothing_left, 10, "the lab's bridges and the controller to be gone")


def two_mn_topology(tmp_path, domains: int) -> str:
    """A generated topology with two MNs, two networks per domain and two
    PoAs per network, on ports of its own (apart)."""
    from mpa_lab.topogen import main as topogen
    topology = tmp_path / "generated.yaml"
    assert topogen(["--domains", str(domains), "--networks-per-domain", "2",
                    "--poas-per-network", "2", "--mobile-nodes", "2", "-o", str(topology)]) == 0
    apart(str(topology))
    return str(topology)


def test_two_mobile_nodes_take_turns_each_with_its_own_stream(prerequisites, tmp_path):
    topology = two_mn_topology(tmp_path, domains=2)
    _, results = run_scenario(tmp_path, topology, """\
        traffic: {from: cn1, rate_pps: 100}
        mobile_nodes:
          mn1: {targets: [ap1-2-1, ap1-1-1]}
          mn2: {targets: [ap2-2-1, ap2-1-1]}
        modes: {mpa_buffer: {handovers: 4}}
        handovers: {interval_s: 0.3, warmup_s: 0.5}
        """, RUN_TWO_MNS_S)
    rows = results["modes"]["mpa_buffer"]["handovers"]
    assert [(r["mn"], r["to_poa"]) for r in rows] == [
        ("mn1", "ap1-2-1"), ("mn2", "ap2-2-1"), ("mn1", "ap1-1-1"), ("mn2", "ap2-1-1")]
    assert all(r["ok"] and r["lost"] == 0 and r["buffered"] is not None for r in rows), rows
    # Two streams, one per MN, both in the summary.
    assert len([f for f in os.listdir(tmp_path / "out" / "logs")
                if f.startswith("arrivals-")]) == 2
    summary = results["modes"]["mpa_buffer"]["summary"]
    assert summary["lost"] == 0 and summary["received"] == summary["sent"] > 0
    assert nothing_left()


def test_a_tcp_stream_crosses_buffered_handovers_without_a_retransmission_timeout(
        prerequisites, tmp_path):
    topology = write_test_topology(DEFAULT_TOPOLOGY, tmp_path / "two_domains.yaml")
    text, results = run_scenario(tmp_path, topology, """\
        traffic: {from: cn1, protocol: tcp, rate_pps: 500, size: 1000}
        mobile_nodes:
          mn1: {targets: [ap-a2-1, ap-a1-1]}
        modes: {mpa_buffer: {handovers: 2}}
        handovers: {interval_s: 0.5, warmup_s: 0.5}
        """, RUN_SHORT_S)
    assert "TCP across the handovers" in text
    body = results["modes"]["mpa_buffer"]
    assert len(body["handovers"]) == 2
    for row in body["handovers"]:
        assert row["ok"], (row["errors"], row.get("stderr"))
        tcp = row["tcp"]
        # No retransmission timeout, by the socket's count and the namespace's.
        assert (tcp["timeouts"], tcp["ns_timeouts"]) == (0, 0), tcp
        assert tcp["stall_ms"] is not None and tcp["throughput_mbps"]["after"] > 0, tcp
        assert row["buffered"], row    # the segments were held across the move
    summary = body["summary"]
    assert summary["tcp"]["timeouts"] == 0 and summary["tcp"]["ns_timeouts"] == 0
    # Every record written arrived once and in order: TCP, through the buffer.
    assert summary["lost"] == summary["duplicates"] == summary["reordered"] == 0
    assert summary["received"] == summary["sent"] > 0
    assert any(p.endswith("tcp.png") for p in results["plots"])
    assert nothing_left()


def test_two_mobile_nodes_moving_at_once_lose_and_duplicate_nothing(prerequisites, tmp_path):
    topology = two_mn_topology(tmp_path, domains=1)
    # mn1 starts at ap1-1-1, mn2 at ap1-2-1: they swap networks at once, and back.
    text, results = run_scenario(tmp_path, topology, """\
        traffic: {from: cn1, rate_pps: 100}
        mobile_nodes:
          mn1: {targets: [ap1-2-2, ap1-1-1]}
          mn2: {targets: [ap1-1-2, ap1-2-1]}
        modes: {mpa_buffer: {handovers: 2}}
        handovers: {together: true, interval_s: 0.5, warmup_s: 0.5}
        """, RUN_SHORT_S)
    body = results["modes"]["mpa_buffer"]
    rows = body["handovers"]
    assert sorted((r["moment"], r["mn"], r["to_poa"]) for r in rows) == [
        (1, "mn1", "ap1-2-2"), (1, "mn2", "ap1-1-2"), (2, "mn1", "ap1-1-1"),
        (2, "mn2", "ap1-2-1")]
    assert all(r["ok"] and r["buffered"] is not None for r in rows), rows
    assert body["summary"]["moments"]["moments"] == 2
    per_mn = body["summary"]["per_mn"]
    assert set(per_mn) == {"mn1", "mn2"}
    for mn, counts in per_mn.items():
        assert counts["sent"] > 0 and counts["lost"] == 0 and counts["duplicates"] == 0, (
            mn, counts)
    # Reordering at 100 packets/s is the cut's bound (docs/architecture.md,
    # "Draining"): reported here, per MN; zero is asserted below that bound
    # (test_slower_than_the_controllers_round_trip_...).
    print("reordered per MN:", {mn: c["reordered"] for mn, c in per_mn.items()})
    assert "Per mobile node" in text
    assert nothing_left()
