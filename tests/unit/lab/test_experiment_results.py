"""The experiment's bookkeeping without a lab: sessions, results.json's rows
and summaries, the comparison table, the plots and the progress bar."""

from __future__ import annotations

import io
import json
import os
from types import SimpleNamespace

import pytest

from support.paths import ROOT
from mpa_lab.experiment import results as res
from mpa_lab.experiment.runner import Experiment, sessions
from mpa_lab.experiment.handover_driver import HandoverResult
from mpa_lab.experiment.plots import write_plots
from mpa_lab.experiment.progress import Progress
from mpa_lab.experiment.scenario import MODES, MPA_BUFFER, MPA_COPY_FORWARD, REACTIVE, load_scenario
from mpa_lab.traffic.analysis import analyse

DEMO = os.path.join(ROOT, "topologies", "scenarios", "demo.yaml")
INTER_DOMAIN = os.path.join(ROOT, "topologies", "scenarios", "inter_domain.yaml")
MS = 1_000_000
PERIOD = 10 * MS          # 100 packets/s


def stream_arrivals(count: int, gap: tuple[int, int] = (), duplicate: int | None = None,
                    delay_ns: int = 2 * MS):
    """(seq, send ns, receive ns) of a 100 packets/s stream whose packets
    ``gap[0]``..``gap[1]`` - 1 are lost; ``duplicate`` arrives twice."""
    out = []
    for seq in range(count):
        if gap and gap[0] <= seq < gap[1]:
            continue
        out.append((seq, seq * PERIOD, seq * PERIOD + delay_ns))
        if seq == duplicate:
            out.append((seq, seq * PERIOD, seq * PERIOD + delay_ns + MS))
    return out


def result(index=1, *, kind="handover", start_ms=0, end_ms=1000, down_ms=None, ok=True,
           timings=None, from_poa="ap-a1-1", to_poa="ap-a2-1", networks=("net-a1", "net-a2")):
    r = HandoverResult(index, kind, "mn1", *networks, from_poa, to_poa,
                       started_wall_ns=start_ms * MS, ended_wall_ns=end_ms * MS)
    if down_ms is not None:
        r.link.append(SimpleNamespace(down_wall_ns=down_ms * MS, duration_ms=25.0,
                                      up_wall_ns=(down_ms + 25) * MS, imposed_ms=24.0))
    r.client = {"results": [{"timings_ms": timings or {"preauth": 3.0}}]}
    if not ok:
        r.errors.append("mpa-mn exit status 1")
    return r


def window_of(arrivals, r, sent=None):
    return analyse(arrivals, sent=sent, windows=[r.window()], period_ns=PERIOD)["windows"][0]


# -- sessions -------------------------------------------------------------------

def test_every_mode_is_one_session_and_each_loss_one_of_its_own():
    scenario = load_scenario(DEMO)
    names = [s.name for s in sessions(scenario)]
    assert names == ["reactive", "mpa", "mpa_buffer",
                     *[f"mpa_copy_forward-{k}" for k in range(1, 11)], "mpa_bicast"]
    assert sum(len(s.plan) for s in sessions(scenario)) == 50


def test_repetitions_run_every_mode_again_in_turn(tmp_path):
    text = open(DEMO).read().replace("topology: ../two_domains.yaml",
                                     f"topology: {ROOT}/topologies/two_domains.yaml")
    text = text.replace("modes: [reactive, mpa, mpa_buffer, mpa_copy_forward, mpa_bicast]",
                        "modes: {mpa_buffer: {handovers: 2}, reactive: {handovers: 1}}\n"
                        "repetitions: 2")
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    assert [(s.name, s.repetition, len(s.plan)) for s in sessions(load_scenario(str(path)))] \
        == [("mpa_buffer-1", 1, 2), ("reactive-1", 1, 1),
            ("mpa_buffer-2", 2, 2), ("reactive-2", 2, 1)]


# -- rows -----------------------------------------------------------------------

def test_a_row_holds_the_receivers_view_of_the_packets_sent_during_the_handover():
    arrivals = stream_arrivals(200, gap=(50, 53), duplicate=60)
    r = result(start_ms=400, end_ms=900, down_ms=495)
    window = window_of(arrivals, r, sent=200)
    record = {"from_poa": "ap-a1-1", "to_poa": "ap-a2-1", "signal_to_flows_ms": 6.5,
              "arrival": "signal", "buffer": {"buffered": 4, "max_delay_ms": 30.0}}
    row = res.handover_row(1, 1, r, window, record, res.timeline(arrivals, window,
                                                                 res.event_ns(r)))
    assert {"index", "from", "to", "sent", "received", "lost", "duplicates", "reordered",
            "interruption_ms", "buffered", "signal_to_flows_ms"} <= set(row)
    assert (row["from"], row["to"]) == ("net-a1", "net-a2")
    # Packets 40..89 were sent in the window: 3 lost, one of them twice.
    assert (row["sent"], row["received"], row["lost"], row["duplicates"]) == (50, 47, 3, 1)
    assert row["interruption_ms"] == 40.0          # 49's arrival to 53's
    assert (row["buffered"], row["signal_to_flows_ms"]) == (4, 6.5)
    assert row["link_layer_ms"] == 25.0 and row["client_timings_ms"] == {"preauth": 3.0}
    assert row["imposed_ms"] == 24.0               # of the 25 ms, the lab held 24 on purpose
    assert row["beyond_link_layer_ms"] == 15.0    # 40 ms, of which the link's 25 ms
    # Its domains not given: whether it crossed one is not known.
    assert (row["from_domain"], row["to_domain"], row["inter_domain"]) == (None, None, None)
    points = row["timeline"]
    # Around the gap only, in ms from the link going down (495 ms).
    assert points["zero_wall_ns"] == 495 * MS
    assert points["seq"][0] == 40 and 53 in points["seq"] and 50 not in points["seq"]
    assert points["ms"][points["seq"].index(53)] == 530 + 2 - 495


def test_the_outage_begins_at_the_cut_then_the_link_switch_then_the_start():
    r = result(start_ms=100)
    assert res.event_ns(r) == 100 * MS
    r = result(start_ms=100, down_ms=300)
    assert res.event_ns(r) == 300 * MS
    r.loss_wall_ns = 200 * MS
    assert res.event_ns(r) == 200 * MS


def test_controller_records_are_matched_by_poas_once_each_and_never_a_switch_back():
    history = [{"id": 1, "from_poa": "ap-a1-1", "to_poa": "ap-a2-1", "switched_back": True},
               {"id": 2, "from_poa": "ap-a1-1", "to_poa": "ap-b1-1"},
               {"id": 3, "from_poa": "ap-a1-1", "to_poa": "ap-a2-1"},
               {"id": 4, "from_poa": "ap-a1-1", "to_poa": "ap-a2-1"}]
    r = result()
    assert res.controller_record(history, r)["id"] == 3
    assert res.controller_record(history, r)["id"] == 4
    assert res.controller_record(history, r) == {}
    assert [h["id"] for h in history] == [1, 2]


def test_a_record_of_an_mn_from_another_domain_is_matched_by_its_target_poa():
    """One controller per domain: the target's knows no PoA of the other
    domain, so its record says no from_poa."""
    history = [{"id": 1, "from_poa": None, "to_poa": "ap-a2-1", "switched_back": True},
               {"id": 2, "from_poa": None, "to_poa": "ap-b1-1"},
               {"id": 3, "from_poa": None, "to_poa": "ap-a2-1", "buffer": {"buffered": 5}}]
    assert res.controller_record(history, result())["id"] == 3
    assert [h["id"] for h in history] == [1, 2]


def test_a_summary_sums_the_streams_and_takes_percentiles_over_good_handovers():
    rows = [{"ok": True, "interruption_ms": v, "lost": 0, "buffered": 2,
             "signal_to_flows_ms": 5.0} for v in (40.0, 50.0, 60.0)]
    rows.append({"ok": False, "interruption_ms": 9000.0, "lost": 7, "buffered": None,
                 "signal_to_flows_ms": None})
    streams = [{"expected": 1000, "unique": 990, "lost": 10, "duplicated": 1, "reordered": 2,
                "jitter_ms": 1.0},
               {"expected": 100, "unique": 10, "lost": 90, "duplicated": 0, "reordered": 0,
                "jitter_ms": 100.0}]
    s = res.summary(rows, streams, [1.0, 2.0, 30.0])
    assert (s["handovers"], s["failed"]) == (4, 1)
    assert (s["sent"], s["received"], s["lost"], s["duplicates"], s["reordered"]) == \
        (1100, 1000, 100, 1, 2)
    assert (s["interruption_ms_p50"], s["interruption_ms_max"]) == (50.0, 60.0)
    assert s["one_way_delay_ms_p50"] == 2.0
    assert s["jitter_ms"] == pytest.approx((990 * 1.0 + 10 * 100.0) / 1000, abs=1e-3)
    assert (s["lost_in_handovers"], s["buffered"], s["signal_to_flows_ms_p50"]) == (7, 6, 5.0)


def test_a_handover_says_whether_it_crossed_domains():
    arrivals = stream_arrivals(200, gap=(50, 53))
    r = result(start_ms=400, end_ms=900, down_ms=495)
    window = window_of(arrivals, r, sent=200)
    points = res.timeline(arrivals, window, res.event_ns(r))
    row = res.handover_row(1, 1, r, window, {}, points, domains=("domain-a", "domain-b"))
    assert (row["from_domain"], row["to_domain"], row["inter_domain"]) == (
        "domain-a", "domain-b", True)
    row = res.handover_row(1, 1, r, window, {}, points, domains=("domain-a", "domain-a"))
    assert row["inter_domain"] is False


def crossing_rows():
    """Two intra-domain handovers and two inter-domain ones, one of them failed."""
    def row(inter, ok, gap, link, lost, dup=0, reord=0):
        return {"ok": ok, "inter_domain": inter, "interruption_ms": gap, "link_layer_ms": link,
                "beyond_link_layer_ms": gap - link, "sent": 100, "received": 100 - lost,
                "lost": lost, "duplicates": dup, "reordered": reord, "buffered": None,
                "signal_to_flows_ms": None}
    return [row(False, True, 30.0, 20.0, 1), row(False, True, 50.0, 20.0, 2, dup=1),
            row(True, True, 260.0, 200.0, 5, reord=3), row(True, False, 9000.0, 200.0, 90)]


def test_a_summary_takes_intra_and_inter_domain_handovers_apart():
    s = res.summary(crossing_rows(), [], [])
    assert s["intra_domain"] == {
        "handovers": 2, "failed": 0, "sent": 200, "received": 197, "lost": 3,
        "duplicates": 1, "reordered": 0, "interruption_ms_p50": 30.0,   # nearest rank
        "interruption_ms_max": 50.0, "beyond_link_layer_ms_p50": 10.0,
        "beyond_link_layer_ms_max": 30.0}
    inter = s["inter_domain"]
    # The failed one counts its packets, not its gap.
    assert (inter["handovers"], inter["failed"], inter["lost"], inter["reordered"]) == (
        2, 1, 95, 3)
    assert (inter["beyond_link_layer_ms_p50"], inter["beyond_link_layer_ms_max"]) == (
        60.0, 60.0)
    # Rows whose domains are not known are in neither.
    assert res.summary([{**crossing_rows()[0], "inter_domain": None}], [], [])[
        "intra_domain"]["handovers"] == 0


def test_a_summary_of_nothing_is_empty_not_an_error():
    s = res.summary([], [], [])
    assert s["handovers"] == 0 and s["interruption_ms_p50"] is None and s["jitter_ms"] is None


def test_one_way_delays_count_each_packet_once():
    assert res.first_delays_ms(stream_arrivals(3, duplicate=1)) == [2.0, 2.0, 2.0]


# -- the table and the plots ------------------------------------------------------

def synthetic_results() -> dict:
    modes = {}
    for mode, gap_ms, lost in ((REACTIVE, 5600.0, 560), (MPA_BUFFER, 40.0, 0),
                               (MPA_COPY_FORWARD, 14.0, 0)):
        rows = []
        for index in range(1, 4):
            arrivals = stream_arrivals(100 + int(gap_ms / 10) + 100,
                                       gap=(100, 100 + int(gap_ms / 10) - 1))
            r = result(index, start_ms=900, end_ms=2000 + int(gap_ms), down_ms=995)
            window = window_of(arrivals, r)
            rows.append(res.handover_row(index, 1, r, window, {}, res.timeline(
                arrivals, window, res.event_ns(r))))
        modes[mode] = {"handovers": rows, "sessions": [], "summary": res.summary(
            rows, [{"expected": 1000, "unique": 1000 - lost, "lost": lost, "duplicated": 0,
                    "reordered": 0, "jitter_ms": 0.5}], [2.0])}
    return {"scenario": "demo", "commit": "abc1234", "modes": modes,
            "settings": {"traffic": {"rate_pps": 100}}}


def test_the_table_lists_the_modes_with_rfc_6252s_figures_and_the_ratio():
    text = res.table(synthetic_results())
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["mode", "handovers", "sent"]
    reactive = next(line for line in lines if line.startswith("reactive (no MPA)"))
    assert "5.60 s" in reactive and "about 4 s and about 200 packets lost" in reactive
    assert any(line.startswith("mpa_buffer") and "0 lost; 29-45 ms" in line for line in lines)
    assert any("about 10 duplicates" in line for line in lines)
    assert res.ratio(synthetic_results()) == 140.0
    assert "times mpa_buffer's" in text


def test_the_table_shows_intra_and_inter_domain_handovers_apart():
    results = synthetic_results()
    rows = crossing_rows()
    results["modes"][MPA_BUFFER]["summary"] = res.summary(rows, [], [])
    lines = res.table(results).splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Intra- and inter-domain"))
    assert lines[at + 1].split() == ["mode", "handovers", "lost", "dup", "reord",
                                     "interruption", "p50", "beyond", "L2", "p50", "max"]
    split = lines[at + 3:lines.index("", at)]
    assert split[0].split() == ["mpa_buffer", "intra-domain", "2", "3", "1", "0", "30.0", "ms",
                                "10.0", "ms", "30.0", "ms"]
    assert split[1].split()[:7] == ["mpa_buffer", "inter-domain", "2", "(1", "failed)", "95",
                                    "0"]
    assert "60.0 ms" in split[1]
    # Modes whose handovers' domains are not known have no lines there.
    assert not any(line.startswith(("reactive", "mpa_copy")) for line in split)


def test_without_domains_there_is_no_split_table():
    assert "inter-domain" not in res.table(synthetic_results())


def test_the_ratio_needs_both_modes():
    results = synthetic_results()
    del results["modes"][REACTIVE]
    assert res.ratio(results) is None
    assert "times" not in res.table(results)


def test_the_plots_are_png_files_one_per_mode_and_two_comparisons(tmp_path):
    paths = write_plots(synthetic_results(), str(tmp_path))
    assert sorted(os.path.basename(p) for p in paths) == sorted(
        [f"timeline-{m}.png" for m in (REACTIVE, MPA_BUFFER, MPA_COPY_FORWARD)]
        + ["timelines.png", "summary.png"])
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(path) > 10_000


def test_handovers_with_domains_get_the_domains_plot(tmp_path):
    results = synthetic_results()
    rows = results["modes"][MPA_BUFFER]["handovers"]
    for row, inter in zip(rows, (False, True, True)):
        row.update(inter_domain=inter, beyond_link_layer_ms=row["interruption_ms"] - 25.0)
    results["modes"][MPA_BUFFER]["summary"] = res.summary(rows, [], [])
    paths = write_plots(results, str(tmp_path))
    assert os.path.join(str(tmp_path), "domains.png") in paths
    with open(tmp_path / "domains.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_no_handovers_no_plots(tmp_path):
    assert write_plots({"modes": {MPA_BUFFER: {"handovers": []}}}, str(tmp_path)) == []


# -- the experiment's analysis of a session ----------------------------------------

class RecordedStream:
    """What a finished UdpStream offers the analysis: what the sender
    attempted and the receiver's arrivals."""

    protocol = "udp"

    def __init__(self, arrivals, sent):
        self._arrivals, self.sent, self.rate = arrivals, {"attempted": sent}, 100

    def arrivals(self):
        return self._arrivals

    def analysis(self, windows, arrivals=None):
        return analyse(arrivals, sent=self.sent["attempted"], windows=windows,
                       period_ns=PERIOD)


def test_a_session_becomes_rows_matched_to_the_controllers_records(tmp_path):
    scenario = load_scenario(DEMO)
    experiment = Experiment(scenario, str(tmp_path), ofp_port=1, rest_port=2,
                            progress=Progress(1, out=io.StringIO()))
    experiment._prepare_out()
    experiment.results = {"modes": {m: {"handovers": [], "summary": None, "sessions": []}
                                    for m in MODES}}
    experiment._collected = {m: {"streams": [], "delays": []} for m in MODES}
    session = sessions(scenario)[2]
    assert session.mode == MPA_BUFFER
    done = [result(1, start_ms=400, end_ms=900, down_ms=495),
            result(2, start_ms=1400, end_ms=1900, down_ms=1495, from_poa="ap-a2-1",
                   to_poa="ap-b1-1")]
    history = [{"from_poa": "ap-a2-1", "to_poa": "ap-b1-1", "buffer": {"buffered": 3},
                "signal_to_flows_ms": 7.0}]
    stream = RecordedStream(stream_arrivals(300, gap=(50, 53)), 300)
    experiment._analyse(session, done, {None: history}, {"handover_completed": 1},
                        {"mn1": stream})
    rows = experiment.results["modes"][MPA_BUFFER]["handovers"]
    assert [(r["index"], r["lost"], r["buffered"]) for r in rows] == [(1, 3, None), (2, 0, 3)]
    experiment._finish()
    written = json.load(open(tmp_path / "results.json"))
    assert written["modes"][MPA_BUFFER]["summary"]["lost"] == 3
    assert written["modes"][MPA_BUFFER]["sessions"][0]["counters"] == {"handover_completed": 1}
    assert os.path.exists(tmp_path / "plots" / "timeline-mpa_buffer.png")


# -- progress ---------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_without_a_terminal_is_one_line_per_step():
    out, clock = io.StringIO(), Clock()
    progress = Progress(4, out=out, clock=clock)
    clock.now = 65
    progress.step("mpa_buffer 1/4 done")
    progress.note("handover 2 failed")
    progress.close()
    assert out.getvalue().splitlines() == [
        "[#######.......................] 1/4 1:05 mpa_buffer 1/4 done", "handover 2 failed"]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_redraws_one_line():
    out = Terminal()
    progress = Progress(2, out=out, clock=Clock())
    progress.show("starting")
    progress.step("one done")
    progress.note("a note")
    progress.step("two done")
    progress.close()
    text = out.getvalue()
    assert text.count("\n") == 2 and text.count("\r\033[K") == 4
    assert text.endswith("[" + "#" * 30 + "] 2/2 0:00 two done\n")


def test_one_controller_per_domain_each_record_is_the_target_s_and_rows_say_the_crossing(
        tmp_path):
    scenario = load_scenario(INTER_DOMAIN)
    experiment = Experiment(scenario, str(tmp_path), ofp_port=1, rest_port=2,
                            progress=Progress(1, out=io.StringIO()))
    experiment._prepare_out()
    experiment.results = {"modes": {m: {"handovers": [], "summary": None, "sessions": []}
                                    for m in scenario.modes}}
    experiment._collected = {m: {"streams": [], "delays": []} for m in scenario.modes}
    session = next(s for s in sessions(scenario) if s.mode == MPA_BUFFER)
    done = [result(1, start_ms=400, end_ms=900, down_ms=495, from_poa="ap-a1-1",
                   to_poa="ap-a2-1"),
            result(2, start_ms=1400, end_ms=1900, down_ms=1495, from_poa="ap-a2-1",
                   to_poa="ap-b1-1", networks=("net-a2", "net-b1"))]
    # domain-a's controller keeps a record between the same PoAs as the second
    # handover (a stale one): only domain-b's, the target's, is that handover's.
    history = {"domain-a": [{"from_poa": "ap-a1-1", "to_poa": "ap-a2-1",
                             "buffer": {"buffered": 1}},
                            {"from_poa": "ap-a2-1", "to_poa": "ap-b1-1",
                             "buffer": {"buffered": 99}}],
               # domain-b knows no PoA of domain-a: no from_poa.
               "domain-b": [{"from_poa": None, "to_poa": "ap-b1-1",
                             "buffer": {"buffered": 4}}]}
    counters = {"domain-a": {"binding_updated_abroad": 1}, "domain-b": {"tunnel_vxlan": 1}}
    stream = RecordedStream(stream_arrivals(300, gap=(150, 153)), 300)
    experiment._analyse(session, done, history, counters, {"mn1": stream})
    rows = experiment.results["modes"][MPA_BUFFER]["handovers"]
    assert [(r["buffered"], r["from_domain"], r["to_domain"], r["inter_domain"])
            for r in rows] == [(1, "domain-a", "domain-a", False),
                               (4, "domain-a", "domain-b", True)]
    experiment._finish()
    written = json.load(open(tmp_path / "results.json"))
    mode = written["modes"][MPA_BUFFER]
    assert mode["sessions"][0]["counters"] == counters
    assert (mode["summary"]["intra_domain"]["handovers"],
            mode["summary"]["inter_domain"]["lost"]) == (1, 3)
    assert written["plots"] and "domains.png" in " ".join(written["plots"])


def test_with_one_controller_the_topology_s_domains_still_say_which_handovers_cross():
    scenario = load_scenario(DEMO)
    experiment = Experiment(scenario, "unused", ofp_port=1, rest_port=2,
                            progress=Progress(1, out=io.StringIO()))
    r = result(networks=("net-a2", "net-b1"))
    assert experiment._domains(r) == ("domain-a", "domain-b")


def test_a_copy_and_forward_abroad_is_matched_by_its_network_at_the_home_domain():
    """The home domain keeps a copy-and-forward to a second interface in the
    other domain: it knows the PoA the MN left, not the one it reached."""
    history = [{"id": 1, "from_poa": "ap-a1-1", "to_poa": None, "network": "net-a2"},
               {"id": 2, "from_poa": "ap-a1-1", "to_poa": None, "network": "net-b1",
                "signal_to_flows_ms": 4.0}]
    r = result()
    r.to_network, r.to_poa = "net-b1", "ap-b1-1"
    assert res.controller_record(history, r)["id"] == 2
    assert [h["id"] for h in history] == [1]


def test_results_name_the_checkout_commit_from_git(monkeypatch):
    from mpa_lab.experiment import runner
    answers = {"rev-parse": "abc1234\n", "status": " M apps/x.py\n"}
    monkeypatch.setattr(runner.subprocess, "run", lambda argv, **kw: SimpleNamespace(
        stdout=answers[argv[1]]))
    monkeypatch.setenv("MPA_SOURCE_COMMIT", "fffffff")
    assert runner.source_commit() == {"commit": "abc1234", "dirty": True}


@pytest.mark.parametrize("built, expected", [
    ("8d73b72", {"commit": "8d73b72", "dirty": False}),
    ("8d73b72-dirty", {"commit": "8d73b72", "dirty": True}),
    (None, {"commit": "unknown", "dirty": False}),
])
def test_results_in_an_image_name_the_commit_it_was_built_from(monkeypatch, built, expected):
    # The image has no .git and no git: the build's SOURCE_COMMIT says it.
    from mpa_lab.experiment import runner

    def no_git(argv, **kw):
        raise FileNotFoundError(argv[0])
    monkeypatch.setattr(runner.subprocess, "run", no_git)
    if built is None:
        monkeypatch.delenv("MPA_SOURCE_COMMIT", raising=False)
    else:
        monkeypatch.setenv("MPA_SOURCE_COMMIT", built)
    assert runner.source_commit() == expected
