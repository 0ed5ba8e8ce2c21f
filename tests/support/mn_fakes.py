"""What the MN's library and CLI meet, faked around the real AA/CA service: the
REST layer as an urllib opener, the gateways as sockets, `ip` as a function,
the clocks, and mpa-mn's command line run in-process."""

import io
import json
import re
import socket
import subprocess
import urllib.error
import urllib.parse

from mpa_mn import cli
from mpa_protocol import messages
from mpa_protocol.pana import PANA_PORT
from mpa_sdn.pana_agent import PanaReply
from mpa_sdn.service import INBAND, REST, Origin
from support.aaa import mn_credentials, settled
from support.service_rig import IDENTITY, MN_MAC, counter_entropy

MN_ADDRESS = "10.1.1.10"          # in net-a1, whose CTNs are net-a2 and net-b1
CREDENTIALS = mn_credentials(IDENTITY)
ENDPOINTS = messages.SIGNAL_ENDPOINTS


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def ticking_sleep(rig, waits):
    """sleep() that moves the service's time on instead (DAD advances with it)."""
    def sleep(seconds):
        waits.append(seconds)
        rig.now += seconds
        rig.service.tick(rig.now)
    return sleep


class Response:
    def __init__(self, status, body):
        self.status, self._body = status, body

    def read(self, n=-1):
        return self._body

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class RestLayer:
    """An urllib opener that is the controller's REST layer: the body goes to
    the service as it is, the answer comes back with its status; a config
    held back by DAD is a 503 address-pending, as the real layer answers."""

    def __init__(self, rig, tamper=None):
        self.rig, self.tamper = rig, tamper
        self.requests = []

    def open(self, request, timeout=None):
        path = urllib.parse.urlsplit(request.full_url).path
        assert request.get_method() == "POST"
        assert request.get_header("Content-type") == "application/json"
        self.requests.append((path, request.data))
        match = re.fullmatch(r"/mpa/v1/networks/([^/]+)/(\w+)", path)
        if path == "/mpa/v1/discover":
            network, kinds = None, ("discover",)
        elif match and match[2] in ENDPOINTS:
            network, kinds = match[1], ENDPOINTS[match[2]]
        else:
            raise urllib.error.HTTPError(request.full_url, 404, "Not Found", {}, io.BytesIO(
                b'{"error": {"status": 404, "message": "no such resource"}}'))
        answers = self.rig.service.handle(request.data, Origin(REST, "192.168.0.2", network),
                                          self.rig.now, kinds)
        headers = {}
        if answers:
            status, body = answers[0].status, answers[0].body
        else:
            status, headers = 503, {"Retry-After": "1"}
            body = messages.encode(messages.error(
                "address-pending", "duplicate address detection is running", retry_after=1))
        if self.tamper:
            body = self.tamper(body)
        if status >= 400:
            raise urllib.error.HTTPError(request.full_url, status, "", headers, io.BytesIO(body))
        return Response(status, body)


class Gateways:
    """A socket factory for the in-band channel: a datagram to a network's
    gateway reaches the service as in-band signalling from the MN; answers come
    back from gateway:port.  Silence is time passing on the fake clock (and the
    service's: a held-back configuration is answered when DAD is done)."""

    def __init__(self, rig, mac=MN_MAC):
        self.rig, self.mac = rig, mac
        self.clock = Clock()
        self.port = rig.topology.mpa.signalling_port
        self.networks = {str(n.gateway): n.id for n in rig.topology.networks.values()}
        self.sent = []           # (bytes, (address, port))
        self.drop = 0            # datagrams to lose on the way
        self.strangers = []      # datagrams another host sends before each answer
        self.tamper = None       # what becomes of each signalling answer on the way ...
        self.pana_tamper = None  # ... and of each PANA message from the AA

    def __call__(self, local):
        return FakeSocket(self, local)

    def deliver(self, answers):
        for answer in answers:
            sock, source = answer.origin.reply_to
            if isinstance(answer, PanaReply):
                body = self.pana_tamper(answer.data) if self.pana_tamper else answer.data
            else:
                body = self.tamper(answer.body) if self.tamper else answer.body
            sock.queue += [(data, addr) for data, addr in self.strangers] + [(body, source)]

    def pana(self, sock, data: bytes, address) -> None:
        """A PANA message to a gateway: the AA's answers (RADIUS answered at once)."""
        rig = self.rig
        origin = Origin(INBAND, sock.local, self.networks[address[0]], self.mac,
                        reply_to=(sock, address))
        self.deliver(settled(rig.service.pana(data, origin, 40716, rig.now), rig.radius,
                             rig.radius_answer))


class FakeSocket:
    def __init__(self, world, local):
        self.world, self.local = world, local
        self.queue, self.timeout, self.closed = [], None, False

    def sendto(self, data, address):
        world = self.world
        world.sent.append((data, address))
        if world.drop:
            world.drop -= 1
            return
        network = world.networks.get(address[0])
        if network is not None and address[1] == PANA_PORT:
            world.pana(self, data, address)
            return
        if network is None or address[1] != world.port:
            return
        origin = Origin(INBAND, self.local, network, world.mac, reply_to=(self, address))
        world.deliver(world.rig.service.handle(data, origin, world.rig.now))

    def settimeout(self, seconds):
        self.timeout = seconds

    def recvfrom(self, size):
        if not self.queue:
            self.world.clock.now += self.timeout
            self.world.rig.now += self.timeout
            self.world.deliver(self.world.rig.service.tick(self.world.rig.now)[1])
            raise socket.timeout()
        return self.queue.pop(0)

    def close(self):
        self.closed = True


class FakeIp:
    """`ip` on a host with eth0 and whatever TUN and VXLAN devices were made,
    with the kernel's rules and routing tables as far as the MN uses them;
    ``-batch -`` applies its lines in order and stops at the first that
    fails, as ip does.  Deleting a device takes its routes and neighbour
    entries with it, not the rules."""

    def __init__(self, fail=None):
        self.links = {"eth0": {"kind": "veth", "mac": "02:00:00:00:01:01",
                               "addrs": [(MN_ADDRESS, 24)], "up": True}}
        self.default = ("10.1.1.1", "eth0")    # the default route: gateway, device
        self.neighbours = {}                   # (address, device) -> (MAC, state)
        self.rules = []                        # {"priority", "src", "table"}, in order
        self.tables = {}                       # table number -> [route as ip -j shows it]
        self.calls, self.fail = [], fail
        self.batches = []                      # the input of each ip -batch

    def __call__(self, argv, **kw):
        assert argv[0] == "ip" and kw.get("capture_output")
        self.calls.append(argv[1:])
        if argv[1:] == ["-batch", "-"]:
            self.batches.append(kw["input"])
            for number, line in enumerate(kw["input"].splitlines(), 1):
                rc, out, err = self._one(line.split())
                if rc:
                    return subprocess.CompletedProcess(argv, 1, "", f"{err}\nCommand "
                                                       f"failed -:{number}")
            return subprocess.CompletedProcess(argv, 0, "", "")
        rc, out, err = self._one(argv[1:])
        return subprocess.CompletedProcess(argv, rc, out, err)

    def _view(self, name):
        link = self.links[name]
        return {"ifname": name, "flags": ["UP"] if link["up"] else [],
                "address": link.get("mac"),
                "linkinfo": {"info_kind": link["kind"], **({"info_data": link["data"]}
                                                           if "data" in link else {})},
                "addr_info": [{"family": "inet", "local": a, "prefixlen": n}
                              for a, n in link["addrs"]]}

    def _one(self, args):
        if self.fail and self.fail in " ".join(args):
            return 2, "", "RTNETLINK answers: Operation not permitted"
        if args[:1] == ["-j"]:
            return self._show(args[1:])
        if args[:2] == ["tuntap", "add"]:
            self.links[args[3]] = {"kind": "tun", "addrs": [], "up": False}
        elif args[:2] == ["link", "add"] and args[3:5] == ["type", "vxlan"]:
            o = dict(zip(args[5::2], args[6::2]))
            self.links[args[2]] = {"kind": "vxlan", "mac": f"ee:00:00:00:00:{len(self.links):02x}",
                                   "addrs": [], "up": False, "data": {
                                       "id": int(o["id"]), "remote": o["remote"],
                                       "local": o["local"], "link": o["dev"],
                                       "port": int(o["dstport"])}}
        elif args[:2] in (["addr", "add"], ["addr", "replace"]):
            address, length = args[2].split("/")
            if (address, int(length)) not in self.links[args[4]]["addrs"]:
                self.links[args[4]]["addrs"].append((address, int(length)))
        elif args[:2] == ["addr", "del"]:
            address, length = args[2].split("/")
            self.links[args[4]]["addrs"].remove((address, int(length)))
        elif args[:3] == ["link", "set", "dev"] and args[4:] == ["up"]:
            self.links[args[3]]["up"] = True
        elif args[:3] == ["link", "set", "dev"] and args[4] == "address":
            self.links[args[3]]["mac"] = args[5]
        elif args[:3] == ["link", "del", "dev"]:
            del self.links[args[3]]
            for routes in self.tables.values():
                routes[:] = [r for r in routes if r["dev"] != args[3]]
            self.neighbours = {k: v for k, v in self.neighbours.items() if k[1] != args[3]}
        elif args[:3] == ["route", "replace", "default"] and "table" in args:
            assert args[3::2][:3] == ["via", "dev", "onlink"], args
            self.tables[int(args[-1])] = [{"dst": "default", "gateway": args[4],
                                           "dev": args[6], "flags": ["onlink"]}]
        elif args[:3] == ["route", "replace", "default"] and args[3] == "via":
            self.default = (args[4], args[6])
        elif args[:3] == ["route", "flush", "table"]:
            self.tables.pop(int(args[3]), None)
        elif args[:2] == ["neigh", "replace"] and args[3::2] == ["lladdr", "dev", "nud"]:
            self.neighbours[(args[2], args[6])] = (args[4], args[8])
        elif args[:2] == ["rule", "add"] and args[2::2] == ["from", "lookup"]:
            self.rules.append({"priority": 32765 - len(self.rules), "src": args[3],
                               "table": args[5]})
        elif args[:2] == ["rule", "del"]:
            return self._delete_rule(args[2:])
        else:
            raise AssertionError(f"unexpected ip {args}")
        return 0, "", ""

    def _show(self, args):
        if args == ["-d", "addr", "show"]:
            return 0, json.dumps([self._view(name) for name in self.links]), ""
        if args[:2] == ["-d", "addr"]:
            if args[-1] not in self.links:
                return 1, "", f'Device "{args[-1]}" does not exist.'
            return 0, json.dumps([self._view(args[-1])]), ""
        if args[:3] == ["route", "show", "table"]:
            if not self.tables.get(int(args[3])):   # the kernel has no empty tables
                return 2, "", "Error: ipv4: FIB table does not exist.\nDump terminated\n"
            return 0, json.dumps(self.tables[int(args[3])]), ""
        if args[:1] == ["route"]:
            return 0, json.dumps([{"dst": "default", "gateway": self.default[0],
                                   "dev": self.default[1]}]), ""
        if args[:3] == ["rule", "show", "table"]:
            return 0, json.dumps([r for r in self.rules if r["table"] == args[3]]), ""
        if args[:3] == ["neigh", "show", "dev"]:
            return 0, json.dumps([{"dst": address, "lladdr": mac, "state": [state.upper()]}
                                  for (address, dev), (mac, state) in self.neighbours.items()
                                  if dev == args[3]]), ""
        raise AssertionError(f"unexpected ip -j {args}")

    def _delete_rule(self, args):
        """``rule del priority P [from SRC] lookup TABLE``: the first such rule."""
        selector = dict(zip(args[::2], args[1::2]))
        for rule in self.rules:
            if (str(rule["priority"]), rule["src"], rule["table"]) == (
                    selector["priority"], selector.get("from", "all"), selector["lookup"]):
                self.rules.remove(rule)
                return 0, "", ""
        return 2, "", "RTNETLINK answers: No such file or directory"

    def changes(self):
        return [c for c in self.calls if c[0] != "-j"]


class FakeNft:
    """`nft -f -` on a kernel with nf_tables: each input is one transaction of
    ``table F T`` (add, nothing if it is there), ``delete table F T`` (an
    error if it is not) and ``table F T { ... }`` (defined anew), applied all
    or nothing.  ``tables``: (family, name) -> its definition as given (""
    for an empty one); ``fail``: nft's error for every run."""

    STATEMENT = re.compile(r"(delete )?table (\w+) (\w+)( \{)?")

    def __init__(self, fail=None):
        self.tables, self.inputs, self.fail = {}, [], fail

    def __call__(self, argv, **kw):
        assert argv == ["nft", "-f", "-"] and kw.get("capture_output"), argv
        self.inputs.append(kw["input"])
        if self.fail:
            return subprocess.CompletedProcess(argv, 1, "", self.fail)
        tables, lines = dict(self.tables), kw["input"].splitlines(keepends=True)
        while lines:
            line = lines.pop(0)
            match = self.STATEMENT.fullmatch(line.rstrip("\n"))
            if match is None:
                return subprocess.CompletedProcess(argv, 1, "", f"Error: syntax error: {line}")
            delete, key, block = match[1], (match[2], match[3]), match[4]
            if delete and key not in tables:
                return subprocess.CompletedProcess(argv, 1, "", "Error: No such file or "
                                                   "directory")
            if delete:
                del tables[key]
            elif block:
                end = lines.index("}\n")
                tables[key] = line + "".join(lines[:end + 1])
                del lines[:end + 1]
            else:
                tables.setdefault(key, "")
        self.tables = tables
        return subprocess.CompletedProcess(argv, 0, "", "")


class Cli:
    def __init__(self, rig, tmp_path, credentials, channel="rest"):
        self.rig, self.tmp_path, self.channel = rig, tmp_path, channel
        self.credentials = credentials
        self.ip = FakeIp()
        self.nft = FakeNft()
        self.world = Gateways(rig)
        self.system = {}   # more of cli.System's fields, or others
        self.interface = "eth0"   # None: the command names its own

    def __call__(self, *argv, json_out=True, options=()):
        out, err = io.StringIO(), io.StringIO()
        system = cli.System(**{
            "run": self.ip, "nft": self.nft, "opener": RestLayer(self.rig),
            "socket_factory": self.world,
            "clock": self.world.clock, "sleep": ticking_sleep(self.rig, []),
            "wall": lambda: self.rig.service.wall(self.rig.now),
            "entropy": counter_entropy(b"cli"), "stdout": out, "stderr": err, **self.system})
        args = ["--channel", self.channel, "--credentials", self.credentials,
                "--state", str(self.tmp_path / "state.json"),
                *(["--interface", self.interface] if self.interface else []),
                *options, *(["--json"] if json_out else []), *argv]
        rc = cli.main(args, system)
        text = out.getvalue()
        return rc, (json.loads(text) if json_out and text else text), err.getvalue()
