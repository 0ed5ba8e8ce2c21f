"""What the inter-domain integration tests read from an MN's host: mpa-mn's
JSON documents and the kernel's count of UDP datagrams nobody listened for."""

import json

from support.domain_rig import json_documents, udp_no_ports

SNMP = """Ip: Forwarding DefaultTTL InReceives
Ip: 2 64 1120
Udp: InDatagrams NoPorts InErrors OutDatagrams
Udp: 1120 3 0 20
UdpLite: InDatagrams NoPorts InErrors OutDatagrams
UdpLite: 0 7 0 0
"""


class Host:
    def __init__(self, out: str):
        self.out = out

    def cmd(self, command: str) -> str:
        assert command == "cat /proc/net/snmp"
        return self.out


def test_handover_s_ready_event_and_its_result_are_two_documents():
    ready = {"event": "ready", "network": "net-b1"}
    result = {"results": [{"network": "net-b1", "ok": False}]}
    out = json.dumps(ready) + "\n" + json.dumps(result, indent=1) + "\n"
    assert json_documents(out) == [ready, result]


def test_what_is_not_json_ends_the_documents_and_is_kept():
    assert json_documents('{"a": 1}\nTraceback (most recent call last):\n') == [
        {"a": 1}, {"unparsed": "Traceback (most recent call last):"}]


def test_no_output_is_one_empty_document():
    assert json_documents("  \n") == [{}]


def test_no_ports_is_read_from_the_udp_line_not_udplite_s():
    assert udp_no_ports(Host(SNMP)) == 3
