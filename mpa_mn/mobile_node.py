"""The mobile node: discovery, pre-authentication and pre-configuration
(RFC 6252 §6.3 steps 1-2, §7.2, §7.3.3) with one or several CTNs, and the
messages of the proactive handover (steps 2-5): the tunnel, the binding
update and the handover's phases.

:class:`MobileNode` runs each exchange over a channel (:mod:`mpa_mn.channels`)
and believes an answer only once :mod:`mpa_mn.protocol` has verified it: for
pre-authentication (PANA with EAP, :mod:`mpa_mn.pana_client`) the AA's AUTH
under the key from the MSK, the sequence number and HMAC for everything
after.  Error answers carry no MAC (the AA may have no SA to sign with);
they are never believed beyond raising them.  Discovery's answer is the
exception by nature: nothing can prove it before an SA exists, and a forged
candidate leads only to an AA that cannot prove it holds the MSK.

Each CTN's MPA-SA is kept in the state store, saved before every message
that uses a new sequence number.  A message sent inside a handover's
interruption is made ready before it (:meth:`MobileNode.switch_ahead`): its
number taken and saved, its in-band socket opened; what remains is one HMAC,
one send and the answer's check.  The nCoA goes on a virtual interface
(:mod:`mpa_mn.vif`); while the MN holds an MN-terminated (VXLAN) proactive
handover tunnel for it, that interface is the tunnel's end
(:mod:`mpa_mn.vxlan_end`), kept in the state store with the SA.

A binding update for an nCoA must come from the nCoA itself, through the
proactive handover tunnel, and so must the first message after the move:
those go in-band from the address given, whatever the MN's channel is.
A standby binding (RFC 6252 §7.6.2, an MN with a second interface already
attached in the network) is the exception: the controller knows the nCoA
from that interface, so it goes over the MN's channel, in-band from the
nCoA only when the channel is in-band anyway.

The binding is kept by the MN's home domain: a care-of from another
domain's network is bound under the MPA-SA with a network of the home
domain (:mod:`mpa_mn.home_binding`).  Over REST each request goes to the
controller of its network's domain.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import secrets
import time
from typing import Callable

from mpa_mn import pana_client, protocol
from mpa_mn.binding_rewrite import NoRewrites
from mpa_mn.channels import InbandChannel, Target
from mpa_mn.credentials import MnCredentials
from mpa_mn.eap_peer import EapPeer
from mpa_mn.errors import MnError
from mpa_mn.home_binding import HomeBinding, abroad
from mpa_mn.protocol import VXLAN, ProtocolError, SaState
from mpa_mn.state_file import Entry, MemoryState
from mpa_mn.vif import NoVifs, vif_name
from mpa_mn.vxlan_end import VxlanEnd
from mpa_protocol import messages
from mpa_protocol.pana import PANA_PORT
from mpa_protocol.schema import ConfigError

LOG = logging.getLogger("mpa_mn.mobile_node")

# Errors saying the AA has no usable SA (see release).
SA_GONE = ("unknown-sa", "sa-expired")
CONFIG_FIELDS = ("address", "prefix_len", "router", "gateway_mac", "dns", "lease_time")


class Reserved:
    """An authenticated request whose sequence number is taken and saved:
    :meth:`send` signs it (with ``fields`` and whatever it is given then),
    sends it over ``via`` and checks the answer, touching no disk.  ``result``
    makes the caller's result of the checked answer.  A channel opened for it
    alone (``owned``) is closed by :meth:`close`."""

    def __init__(self, entry: Entry, kind: str, expected: str, seq: int, via, fields: dict,
                 echo: dict | None = None, result: Callable[[dict], dict] = dict,
                 owned=None):
        self.sa, self.target = entry.sa, Target.of(entry.candidate)
        self.kind, self.expected, self.seq = kind, expected, seq
        self.via, self.fields, self.echo, self.result = via, fields, echo, result
        self.owned = owned

    def send(self, **late) -> dict:
        """Sent and answered; ``late``: fields known only now (None: left out).
        Sent again (a retransmission) it is the same bytes."""
        data = protocol.signed(self.sa, self.kind, self.seq, **self.fields, **_given(**late))
        answer = self.via.exchange(self.target, self.kind, data)
        return self.result(protocol.check_answer(self.sa, answer, self.seq, self.expected,
                                                 self.echo))

    def close(self) -> None:
        if self.owned is not None:
            self.owned.close()
            self.owned = None

    def __enter__(self) -> "Reserved":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MobileNode(HomeBinding):
    def __init__(self, credentials: MnCredentials, mac: str | None, address: str | None,
                 channel, store=None, vifs=None,
                 entropy: Callable[[int], bytes] = secrets.token_bytes,
                 wall: Callable[[], float] = time.time,
                 inband: Callable[[str], object] = InbandChannel, rewrites=None,
                 pana_socket: Callable = pana_client.udp_socket,
                 pana_timeout: float = pana_client.ANSWER_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic, pana_port: int = PANA_PORT):
        self.credentials = credentials
        self.mac = mac.lower() if mac else None
        self.address = address
        self.channel = channel
        self.store = store if store is not None else MemoryState()
        self.vifs = vifs if vifs is not None else NoVifs()
        self.rewrites = rewrites if rewrites is not None else NoRewrites()
        self.entropy = entropy
        self.wall = wall
        self.inband = inband   # source address -> an in-band channel sending from it
        self.pana_socket = pana_socket   # source address -> a UDP socket for PANA
        self.pana_timeout = pana_timeout
        self.pana_port = pana_port       # RFC 5191's 716; a test may listen elsewhere
        self.clock = clock
        self.state = self.store.load()
        # Tunnel answers believed (tunnel_mpls, tunnel_vxlan) and refused
        # (tunnel_refused_CODE), binding-acks refused (binding_ack_refused_CODE),
        # bindings kept at home (binding_at_home, binding_home_sa_renewed,
        # binding_home_refused), the two steps of one that needs the MN's rewriting
        # (binding_ack_pending, binding_rewriting_sent, binding_moved_after_rewriting,
        # binding_ack_pending_again) and the rewriting itself (binding_rewrite_installed,
        # binding_rewrite_removed, binding_rewrite_failed), beside the channels'
        # counters in mpa-mn's output.
        self.counters = collections.Counter()

    def _save(self) -> None:
        self.store.save(self.state)

    def _need(self, what: str):
        value = getattr(self, what)
        if not value:
            flag = {"mac": "--mac", "address": "--address"}[what]
            raise MnError("usage", f"the MN's {what} is not known: give --interface or {flag}")
        return value

    def _entry(self, network: str) -> Entry:
        entry = self.state.entries.get(network)
        if entry is None:
            raise MnError("not-pre-authenticated",
                          f"no MPA-SA for {network}: pre-authenticate first (preauth {network})")
        return entry

    # -- discovery (RFC 6252 §7.1) ---------------------------------------------

    def discover(self) -> dict:
        """The MN's current network and its candidate target networks."""
        address = self._need("address")
        answer = self.channel.discover(protocol.discover(address=address),
                                       domain=self._domain_of_address(address))
        network, candidates = protocol.check_neighbours(answer)
        self.state.discovery = {"address": address, "network": network, "at": self.wall(),
                                "candidates": candidates}
        self._save()
        return {"network": network, "address": address, "candidates": candidates}

    def candidate(self, network: str) -> dict:
        """``network`` as discovery reported it; discovers again if the MN's
        address changed since (or it never discovered).  The MN's own network
        (for its first binding) is found among its candidates' candidates."""
        discovery = self._discovery()
        for candidate in discovery["candidates"]:
            if candidate["network"] == network:
                return candidate
        if network == discovery["network"]:
            return self._own_network(discovery)
        raise ProtocolError("not-a-candidate", f"{network} is not a candidate target network "
                            f"of {discovery['network']}")

    def _discovery(self) -> dict:
        """The last discovery, made again if the MN's address changed since
        (or it never discovered)."""
        discovery = self.state.discovery
        if discovery is None or discovery.get("address") != self.address:
            self.discover()
        return self.state.discovery

    def _own_network(self, discovery: dict) -> dict:
        """The network the MN is in, described as its neighbours' candidate
        (relations between networks usually go both ways); kept with the
        discovery, which it describes until the MN discovers again."""
        own = discovery["network"]
        if discovery.get("own", {}).get("network") == own:
            return discovery["own"]
        for candidate in discovery["candidates"]:
            answer = self.channel.discover(protocol.discover(network=candidate["network"]),
                                           Target.of(candidate))
            found = [c for c in protocol.check_neighbours(answer)[1] if c["network"] == own]
            if found:
                discovery["own"] = found[0]
                self._save()
                return found[0]
        raise ProtocolError("not-a-candidate", f"{own} is the MN's network, and none of its "
                            "candidate target networks lists it as a candidate")

    # -- pre-authentication (§6.3 step 1, §7.2) ---------------------------------

    def preauthenticate(self, network: str, candidate: dict | None = None,
                        mac: str | None = None, via=None) -> SaState:
        """A new MPA-SA with ``network``'s AA, under the credentials of the domain serving it;
        ``mac``: the interface that will use it, when that is not the MN's own; ``via``: a
        channel other than the MN's (in-band from an address it got since it started)."""
        mac = mac.lower() if mac else self._need("mac")
        candidate = candidate or self.candidate(network)
        if candidate["network"] != network:
            raise MnError("usage", f"the candidate given is {candidate['network']}, not {network}")
        domain = candidate["served_by"]
        credentials = self.credentials.for_domain(domain)
        if credentials is None:
            raise MnError("no-credentials", f"{network} is served by {domain}, and the "
                          f"credentials file has nothing for {domain}")
        target = Target.of(candidate)
        # PANA runs over UDP to the AA's address whatever the MN's channel
        # is, from the address of the in-band channel given, else the MN's.
        local = getattr(via, "local_address", None) or self.address
        pre = not _in_prefix(self.address, candidate.get("prefix"))
        try:
            peer = EapPeer(credentials.identity, credentials.eap_method())
        except (ConfigError, OSError, ValueError) as exc:
            raise MnError("no-credentials", f"the credentials for {domain} cannot be used: "
                          f"{exc}") from None
        client = pana_client.PanaClient(peer, pre, entropy=self.entropy)
        try:
            established = pana_client.run(client, target.address, self.pana_port, local,
                                          self.pana_timeout, self.pana_socket, self.clock)
        finally:
            # What PANA met (PCIs sent again, requests dropped, no answer), in
            # mpa-mn's counters beside the channels'.
            for name, count in client.counters.items():
                self.counters[f"pana_{name}"] += count
        sa_id, sa_keys = established.sa(credentials.identity, network)
        first_seq = int.from_bytes(self.entropy(4), "big")
        sa = SaState(network=network, domain=domain, identity=credentials.identity,
                     mn_mac=mac, sa=sa_id, keys=sa_keys, lifetime=established.lifetime,
                     pana=established.record(target.address, first_seq))
        self.state.entries[network] = Entry(sa, candidate, self.wall())
        self._save()
        LOG.info("%s: pre-authenticated with %s as %s by %s%s (MPA-SA %s, PANA session %08x)",
                 network, domain, credentials.identity, credentials.method,
                 " (pre-authentication)" if pre else "", sa.sa[:8], established.session_id)
        return sa

    # -- authenticated requests ---------------------------------------------------

    def _reserve(self, network: str, kind: str, expected: str, via=None,
                 echo: dict | None = None, result: Callable[[dict], dict] = dict,
                 owned=None, **fields) -> Reserved:
        """``kind`` ready to go over ``via`` (default: the MN's channel)."""
        entry = self._entry(network)
        if entry.sa.next_seq > messages.MAX_SEQ:
            raise MnError("sa-exhausted", f"the MPA-SA for {network} has used every sequence "
                          "number: pre-authenticate again")
        seq = protocol.reserve(entry.sa)
        self._save()  # the number is used from now on, whatever happens next
        return Reserved(entry, kind, expected, seq, via or self.channel, fields, echo, result,
                        owned)

    def _request(self, network: str, kind: str, expected: str, via=None,
                 echo: dict | None = None, **fields) -> dict:
        """``kind`` over ``via`` (default: the MN's channel); the checked answer."""
        return self._reserve(network, kind, expected, via, echo, **fields).send()

    def configure(self, network: str, vif: bool = True) -> dict:
        """The nCoA and the rest of the configuration from ``network``'s CA (§7.3),
        put on the network's virtual interface (``vif``; a caller that puts
        it on an interface of its own says False)."""
        answer = self._request(network, "config-request", "config")
        entry = self.state.entries[network]
        entry.sa.config = {k: answer[k] for k in CONFIG_FIELDS}
        entry.configured_at = self.wall()
        if entry.tunnel is not None and entry.tunnel["address"] != answer["address"]:
            entry.tunnel = None    # it carried the old nCoA
        self._save()
        interface = self._vif(network, entry) if vif else None
        return {"network": network, **entry.sa.config, "interface": interface}

    def _vif(self, network: str, entry: Entry) -> str | None:
        """The nCoA on the network's vif: the end of the VXLAN tunnel held for
        it, else a TUN device; the vif's name (None: the MN keeps none)."""
        config = entry.sa.config
        end = (VxlanEnd.of(entry.tunnel, config["router"], entry.sa.mn_mac) if entry.tunnel
               else None)
        interface, changed = self.vifs.ensure(network, config["address"], end)
        LOG.info("%s: nCoA %s on %s%s%s", network, config["address"],
                 interface or "no interface", " (a VXLAN tunnel's end)" if end else "",
                 " (changed)" if changed else "")
        return interface

    def release(self, network: str, all: bool = False) -> dict:
        """Give the nCoA back; with ``all`` the MPA-SA too."""
        scope = "all" if all else "lease"
        try:
            answer = self._request(network, "release", "released", scope=scope)
        except ProtocolError as exc:
            if exc.code not in SA_GONE:
                raise
            # An error proves nothing about the SA, so it is no reason to change
            # anything; but the user asked for this much to go, and with the AA
            # answering so there is no other way to have it go.
            self.forget(network, scope)
            raise ProtocolError(exc.code, f"{exc.message} (released here: "
                                + ("the MPA-SA forgotten, " if all else "")
                                + "the nCoA's interface removed)", exc.answer) from None
        scope = answer.get("scope", scope)
        removed = self.forget(network, scope)
        return {"network": network, "scope": scope, "interface_removed": removed}

    def pana_ping(self, network: str) -> dict:
        """PANA's Ping on the MPA-SA's session: is the AA there, and does it
        still hold the session?  (RFC 5191 §4.4.)"""
        return self._on_session(network, pana_client.PING)

    def terminate(self, network: str) -> dict:
        """PANA-Termination (RFC 5191 §4.5): the AA ends the MPA-SA (and its
        lease); the MN forgets them."""
        result = self._on_session(network, pana_client.TERMINATION)
        result["interface_removed"] = self.forget(network, "all")
        return result

    def _on_session(self, network: str, kind: str) -> dict:
        entry = self._entry(network)
        record = entry.sa.pana
        if not record or "seq" not in record:
            raise MnError("no-pana-session", f"the MPA-SA for {network} has no PANA session "
                          "to use: pre-authenticate again")
        seq = record["seq"]
        record["seq"] = (seq + 1) & 0xFFFFFFFF
        self._save()   # the number is used from now on, whatever happens next
        pana_client.request_on_session(record, kind, seq, self.pana_port, self.address,
                                       self.pana_timeout, self.pana_socket, self.clock)
        return {"network": network, "pana_session": f"{record['session']:08x}", kind: "answered"}

    def forget(self, network: str, scope: str) -> bool:
        """The nCoA (and with scope "all" the MPA-SA) gone here without a word
        to the network: it has released them itself, or its AA no longer
        holds the SA.  Whether a vif went; False when nothing was held."""
        entry = self.state.entries.get(network)
        if entry is None:
            return False
        if entry.sa.config is not None:
            # A binding abroad to the nCoA is over; first, so that a failure
            # leaves the nCoA here for a later run to forget with it.
            self.drop_rewrite(entry.sa.config["address"])
        if scope == "all":
            del self.state.entries[network]
        else:
            entry.sa.config, entry.configured_at, entry.tunnel = None, None, None
        self._save()
        return self.vifs.remove(network)

    def drop_vif(self, network: str) -> bool:
        """The nCoA's vif gone, with the end of a tunnel held for it: the MN is
        attached in ``network`` with the nCoA, where the tunnel ended.  Saved
        only when a tunnel was held.  Whether anything was there to go."""
        entry = self.state.entries.get(network)
        if entry is not None and entry.tunnel is not None:
            entry.tunnel = None
            self._save()
        return self.vifs.remove(network)

    def resume(self, network: str) -> dict:
        """Prove possession of a held MPA-SA (back in its network within the hold)."""
        answer = self._request(network, "resume", "resumed")
        return {"network": network, "state": answer["state"]}

    # -- the proactive handover (§6.3 steps 2-5) ----------------------------------

    def config(self, network: str) -> dict:
        """The configuration ``network``'s CA gave (the nCoA, its router)."""
        config = self._entry(network).sa.config
        if config is None:
            raise MnError("not-configured", f"no nCoA from {network}: configure first "
                          f"(configure {network})")
        return config

    def tunnel(self, network: str, lifetime: int | None = None) -> dict:
        """The proactive handover tunnel for the nCoA from ``network``'s AR to
        where the MN is (§6.3 step 2), asked with the MN's current address
        (``outer``).  The AR must name the nCoA in its answer.  An MPLS tunnel
        ends at the MN's PoA and changes nothing here; a VXLAN one ends at the
        MN, at ``outer``: the nCoA's vif becomes its end (§7.4), until the
        tunnel is released, the nCoA forgotten or the MN arrives."""
        entry = self._entry(network)
        address = self.config(network)["address"]
        outer = self._need("address")
        answer = self._request(network, "tunnel-request", "tunnel", echo={"address": address},
                               outer=outer, **_given(lifetime=lifetime))
        try:
            described = protocol.tunnel_described(answer, outer)
        except ProtocolError as exc:
            self.counters[f"tunnel_refused_{exc.code}"] += 1
            raise
        self.counters[f"tunnel_{described['encapsulation']}"] += 1
        result = {"network": network, "address": address, **described,
                  "lifetime": answer["lifetime"]}
        held = entry.tunnel
        if described["encapsulation"] == VXLAN:
            entry.tunnel = {**{k: described[k] for k in protocol.VXLAN_FIELDS},
                            "address": address, "lifetime": answer["lifetime"],
                            "at": self.wall()}
        else:
            entry.tunnel = None
        if entry.tunnel is not None or held is not None:   # an end made, or one to go
            self._save()
            interface = self._vif(network, entry)
            if entry.tunnel is not None:
                result["interface"] = interface
        return result

    def untunnel(self, network: str) -> dict:
        """The tunnel released; the end of a VXLAN one goes, the nCoA back on a
        TUN device."""
        self._request(network, "tunnel-release", "tunnel-released")
        entry = self._entry(network)
        if entry.tunnel is not None:
            entry.tunnel = None
            self._save()
            if entry.sa.config is not None:
                self._vif(network, entry)
        return {"network": network}

    def care_of(self, network: str, addresses) -> str:
        """Where ``network`` reaches the MN: one of ``addresses`` (the MN's own) in
        the network's prefix when it is attached there, else the nCoA."""
        entry = self._entry(network)
        config = entry.sa.config
        prefix = (f"{config['address']}/{config['prefix_len']}" if config
                  else entry.candidate.get("prefix"))
        try:
            inside = ipaddress.IPv4Network(prefix, strict=False) if prefix else None
        except ValueError:
            inside = None
        for address in addresses:
            if inside is not None and ipaddress.IPv4Address(address) in inside:
                return address
        return self.config(network)["address"]

    @property
    def sends_inband(self) -> bool:
        """Whether the MN's channel is in-band (UDP to the gateways)."""
        return isinstance(self.channel, InbandChannel)

    def bind(self, network: str, home: str, care_of: str, lifetime: int | None = None,
             standby: bool = False, *, interface: str | None = None,
             bicast_to: str | None = None) -> dict:
        """``home`` bound to ``care_of`` at ``network``'s AR (§6.3 step 3), sent in-band
        from ``care_of``: for an nCoA that is through the tunnel.  ``standby``
        (§7.6.2): bound only once the link of the current care-of is lost, the
        downlink copied there meanwhile; sent as the module's docstring says.
        The answer decides the MN's rewriting (:meth:`_rewrite_for`).

        A binding that needs the MN's rewriting moves in two steps (make
        before break, with the MN as one of the switches): the first answer
        says ``pending``, the binding has not moved; the MN puts its rewriting
        in place, then sends the update again with ``rewriting`` (a new
        sequence number, from ``care_of`` again), and that answer moves it.
        Without the rewriting in place nothing is sent again: the
        correspondents' traffic would reach the care-of unrestored."""
        via = None if standby and not self.sends_inband else self.inband(care_of)
        if bicast_to is not None:
            return self._bicast_at(network, via, home, care_of, bicast_to)
        answer, correspondents = self._binding_update(network, via, home, care_of, lifetime,
                                                      standby)
        installed = None
        if answer.get("pending"):
            self.counters["binding_ack_pending"] += 1
            installed = self._rewrite_first(network, home, care_of, correspondents)
            self.counters["binding_rewriting_sent"] += 1
            answer, correspondents = self._binding_update(network, via, home, care_of,
                                                          lifetime, rewriting=True)
            self.counters["binding_moved_after_rewriting"] += 1
        result = {"network": network, "home_address": home, "care_of": care_of,
                  "lifetime": answer["lifetime"], **_given(standby=answer.get("standby"))}
        return {**result, **self._rewrite_for(network, result, correspondents, installed,
                                              interface)}

    def _bicast_at(self, network: str, via, home: str, care_of: str, leg: str) -> dict:
        """Bicasting steered by the home domain (``network``, which keeps the
        binding of ``home`` to ``care_of``): each packet also to ``leg``, the
        MN's address where it is, until it leaves it.  The binding and the
        MN's rewriting stay as they are."""
        answer = self._request(network, "binding-update", "binding-ack", via=via,
                               echo={"home_address": home, "care_of": care_of},
                               home_address=home, care_of=care_of, bicast=True,
                               bicast_to=leg)
        if answer.get("bicast_to") != leg:
            self.counters["binding_ack_refused_unexpected"] += 1
            raise ProtocolError("unexpected", f"the binding-ack does not bicast to {leg} as "
                                "asked", answer)
        self.counters["bicast_steered"] += 1
        return {"network": network, "home_address": home, "care_of": care_of,
                "lifetime": answer["lifetime"], "bicast_to": leg}

    def _binding_update(self, network: str, via, home: str, care_of: str,
                        lifetime: int | None, standby: bool = False,
                        rewriting: bool = False) -> tuple[dict, list[str] | None]:
        """One binding-update and its believed answer, with the correspondents
        the MN must rewrite for (None: none, see :func:`abroad`)."""
        answer = self._request(network, "binding-update", "binding-ack", via=via,
                               echo={"home_address": home, "care_of": care_of},
                               home_address=home, care_of=care_of,
                               **_given(lifetime=lifetime, standby=standby or None,
                                        rewriting=rewriting or None))
        try:
            if standby and answer.get("standby") is not True:
                # An AR that made it an ordinary binding has moved the downlink already.
                raise ProtocolError("unexpected", "the binding-ack does not say standby as "
                                    "asked", answer)
            correspondents = abroad(answer)
        except ProtocolError as exc:
            self.counters[f"binding_ack_refused_{exc.code}"] += 1
            raise
        if rewriting and answer.get("pending"):
            # The MN said it rewrites; an AR that still waits for it would
            # keep it asking for ever.
            self.counters["binding_ack_pending_again"] += 1
            raise ProtocolError("unexpected", f"{network} answered the binding-update with "
                                f"rewriting still pending: {home} is not moved to {care_of} "
                                "(the MN's rewriting for it stays installed)", answer)
        return answer, correspondents

    def switch(self, network: str, phase: str, buffer_old: bool = False,
               source: str | None = None, mode: str | None = None,
               delivered: list[str] | None = None) -> dict:
        """Tell ``network``'s AR a phase of the handover (in-band from ``source`` if
        given, else over the MN's channel); the answer says the handover's state.
        ``mode``: how the AR gets the MN's traffic meanwhile; ``delivered`` (with
        ``link-lost``): digests of the last frames the lost interface received."""
        with self.switch_ahead(network, phase, buffer_old, source, mode) as reserved:
            return reserved.send(delivered=list(delivered) if delivered else None)

    def switch_ahead(self, network: str, phase: str, buffer_old: bool = False,
                     source: str | None = None, mode: str | None = None) -> Reserved:
        """:meth:`switch` made ready before the moment it is for: its sequence
        number taken and saved, and with ``source`` its in-band socket opened.
        ``send(delivered=...)`` then returns what :meth:`switch` returns; the
        caller closes it."""
        via = self.inband(source) if source else None
        reserved = self._reserve(
            network, "handover", "handover-state", via=via, owned=via,
            result=lambda answer: {"network": network, **_given(
                phase=answer["phase"], buffered=answer.get("buffered"))},
            phase=phase, **_given(buffer_old=buffer_old or None, mode=mode))
        if via is not None:
            via.open()
        return reserved

    # -- what the MN holds ------------------------------------------------------

    def instructions(self, network: str, wait: int = 0,
                     reports: list[dict] | None = None) -> list[dict]:
        """What a policy engine asked of the MN (docs/signalling.md,
        ``instructions``), asked with ``network``'s MPA-SA; ``reports``: how
        the earlier ones went.  With ``wait``, the controller holds the
        question until an instruction is pending or ``wait`` s passed."""
        answer = self._request(network, "instructions", "instruction-list",
                               **_given(wait=wait or None, reports=reports or None))
        pending = answer["pending"]
        if not isinstance(pending, list) or not all(
                isinstance(i, dict) and type(i.get("id")) is int and isinstance(i.get("do"), str)
                for i in pending):
            raise ProtocolError("malformed", "instruction-list: pending is not a list of "
                                "instructions", answer)
        return pending

    def status(self) -> dict:
        now = self.wall()
        networks = []
        for network, entry in sorted(self.state.entries.items()):
            sa, config = entry.sa, entry.sa.config
            expires_in = round(entry.established_at + sa.lifetime - now)
            lease_in = (round(entry.configured_at + config["lease_time"] - now)
                        if config and entry.configured_at is not None else None)
            networks.append({
                "network": network, "domain": sa.domain, "identity": sa.identity,
                "mn_mac": sa.mn_mac, "sa": sa.sa, "next_seq": sa.next_seq,
                "expires_in": max(0, expires_in), "expired": expires_in <= 0,
                "aa": dict(entry.candidate["aa"]),
                "config": dict(config) if config else None,
                "interface": vif_name(network) if config and self.vifs.enabled else None,
                "lease_expires_in": None if lease_in is None else max(0, lease_in),
                "tunnel": _held_tunnel(entry.tunnel, now),
            })
        discovery = self.state.discovery
        return {"mac": self.mac, "address": self.address, "networks": networks,
                "rewrite": self.state.rewrite,
                "discovery": None if discovery is None else {
                    "network": discovery["network"], "address": discovery["address"],
                    "candidates": [c["network"] for c in discovery["candidates"]]}}


def _in_prefix(address: str | None, prefix: str | None) -> bool:
    """Whether the MN's address is in a candidate's prefix: it is attached
    there, and pre-authenticates with no E flag (RFC 5873)."""
    try:
        return ipaddress.IPv4Address(address) in ipaddress.IPv4Network(prefix)
    except (ValueError, TypeError):
        return False


def _held_tunnel(tunnel: dict | None, now: float) -> dict | None:
    """A held VXLAN tunnel as status shows it: when it came is when it ends."""
    if tunnel is None:
        return None
    held = {k: v for k, v in tunnel.items() if k != "at"}
    return {"encapsulation": VXLAN, **held,
            "expires_in": max(0, round(tunnel["at"] + tunnel["lifetime"] - now))}


def without_network(result: dict) -> dict:
    """A result (or an answer) without its network, for where the network is
    said already."""
    return {k: v for k, v in result.items() if k != "network"}


def _given(**fields) -> dict:
    """The fields that have a value: optional fields are left out, not sent as null."""
    return {k: v for k, v in fields.items() if v is not None}
