"""Where the MN's binding is kept, and the MN's part of a binding its home
domain keeps to a care-of in another domain (RFC 6252 §6.3 step 3, across
domains): a part of :class:`mpa_mn.mobile_node.MobileNode`.

The binding is kept by the MN's home domain (the realm of its identity):
another domain knows no home address for it.  A care-of from a network of
another domain is therefore bound under the MPA-SA with a network of the
home domain (:meth:`HomeBinding.bind_care_of`), still in-band from the
care-of, so through that domain's MN-terminated tunnel; the ``binding-ack``
then says ``rewrite_at_mn`` and the MN restores its home address itself for
the correspondents listed (:mod:`mpa_mn.binding_rewrite`), until a binding
without it, the binding's removal, the care-of's release or the MN's arrival
in a home network.  A ``pending`` ack has not moved the binding: the MN
rewrites first, then asks again (:meth:`MobileNode.bind`), still restoring
the care-of it moves from.  Each network's domain is as discovery described
it.
"""

from __future__ import annotations

import ipaddress
import logging

from mpa_mn.binding_rewrite import Rewrite, RewriteError
from mpa_mn.errors import MnError
from mpa_mn.protocol import MPLS, ProtocolError

LOG = logging.getLogger("mpa_mn.home_binding")

# Errors after which a binding at home is sent once more under a new MPA-SA:
# the one held is gone, or held (the MN left that network).
SA_UNUSABLE = ("unknown-sa", "sa-expired", "wrong-state")


class HomeBinding:
    """The domains of networks, the home network, and the rewriting (on the
    MobileNode's state, store, channels and ``rewrites``)."""

    def _known(self) -> list[dict]:
        """Every network the MN has a description of: its MPA-SAs' first."""
        discovery = self.state.discovery or {}
        return ([e.candidate for _, e in sorted(self.state.entries.items())]
                + discovery.get("candidates", []) + [discovery.get("own") or {}])

    def domain_of(self, network: str) -> str | None:
        """``network``'s domain, as discovery described it (None: not known)."""
        entry = self.state.entries.get(network)
        if entry is not None:
            return entry.domain
        for candidate in self._known():
            if candidate.get("network") == network:
                return _domain(candidate)
        return None

    def _domain_of_address(self, address: str) -> str | None:
        """The domain of the known network whose prefix holds ``address``: where
        a discovery from it is asked over REST (None: the default controller)."""
        for candidate in self._known():
            try:
                inside = ipaddress.IPv4Address(address) in ipaddress.IPv4Network(
                    candidate.get("prefix"), strict=False)
            except (TypeError, ValueError):
                continue
            if inside:
                return _domain(candidate)
        return None

    def home_domain(self) -> str | None:
        """The realm of the MN's identity: the domain that keeps its binding.
        The identity it holds for its realm's own domain decides, so that an
        MN with another identity where it roams still has one home.  None:
        no identity, or several, is filed under its own realm."""
        homes = {identity.rsplit("@", 1)[1]
                 for domain, identity in ((d, c.identity)
                                          for d, c in self.credentials.domains.items())
                 if "@" in identity and identity.rsplit("@", 1)[1] == domain}
        return homes.pop() if len(homes) == 1 else None

    # -- the rewriting for a binding abroad ---------------------------------------

    def _rewrite_for(self, network: str, bound: dict, abroad: list[str] | None,
                     installed: Rewrite | None = None, interface: str | None = None) -> dict:
        """The MN's rewriting after a believed binding-ack (``bound``, a
        :meth:`bind` result; ``abroad``: its correspondents when it says
        ``rewrite_at_mn``): installed for them, the table replaced whole; gone
        when the binding is removed or kept without it.  A standby changes
        nothing until it moves the binding, but one abroad is installed now
        for what arrives at its care-of and what leaves by its ``interface``
        (nothing does until the active one is lost), so that nothing is left
        to do between the loss and the traffic.  ``installed``: the rewriting
        put in place before the binding moved (:meth:`_rewrite_first`), not
        installed again when the binding is for the same correspondents.
        What it did, for the result."""
        if bound.get("standby") and bound["lifetime"]:
            if abroad is None:
                return {}
            rewrite = Rewrite.of(bound["home_address"], bound["care_of"], abroad,
                                 interface=interface)
            self._install_rewrite(network, rewrite, f"the standby binding of "
                                  f"{rewrite.home_address} to {rewrite.care_of} stands, but the "
                                  "MN's rewriting for its correspondents is not installed")
            return {"rewrite_at_mn": True, "correspondents": list(rewrite.correspondents),
                    "rewrite_installed": self.rewrites.enabled}
        if abroad is None or not bound["lifetime"]:
            return {"rewrite_removed": True} if self.drop_rewrite() else {}
        # Put in place before the move: the care-of it moved from is restored still.
        rewrite = Rewrite.of(bound["home_address"], bound["care_of"], abroad,
                             installed.restoring if installed is not None else ())
        if rewrite != installed:
            self._install_rewrite(network, rewrite, f"{rewrite.home_address} is bound to "
                                  f"{rewrite.care_of} at {network}, but the MN's rewriting "
                                  "for its correspondents is not installed")
        return {"rewrite_at_mn": True, "correspondents": list(rewrite.correspondents),
                "rewrite_installed": self.rewrites.enabled}

    def _rewrite_first(self, network: str, home: str, care_of: str,
                       abroad: list[str]) -> Rewrite:
        """The rewriting a ``pending`` binding-ack waits for, installed before
        the MN says it rewrites: the binding stays where it was if it cannot
        be (the MN does not ask again)."""
        rewrite = Rewrite.moving_from(self.state.rewrite, home, care_of, abroad)
        self._install_rewrite(network, rewrite, f"{home} stays bound where it was: {network} "
                              f"moves it to {care_of} only once the MN rewrites for its "
                              "correspondents, and the MN's rewriting is not installed, so "
                              "it did not send the binding-update again")
        return rewrite

    def _install_rewrite(self, network: str, rewrite: Rewrite, failed: str) -> None:
        """``rewrite`` installed (the table replaced whole) and recorded, so a
        later run can remove it; ``failed``: what a failure means."""
        try:
            self.rewrites.install(rewrite)
        except RewriteError as exc:
            self.counters["binding_rewrite_failed"] += 1
            raise RewriteError(f"{failed}: {exc}") from None
        if self.rewrites.enabled:
            self.state.rewrite = {**rewrite.record(), "network": network}
            self._save()
            self.counters["binding_rewrite_installed"] += 1

    def arrived_home(self, network: str) -> dict:
        """After the MN's arrival in ``network``: if it is a network of the
        home domain, the home domain's switches do every rewrite for the
        MN attached there, so the rewriting left from a binding abroad goes.
        What it did, for the result; a failure is reported, not raised: the
        MN is attached, and the state file keeps the table for a later run."""
        home = self.home_domain()
        if self.state.rewrite is None or home is None or self.domain_of(network) != home:
            return {}
        try:
            self.drop_rewrite()
        except RewriteError as exc:
            LOG.warning("%s: the rewriting left from a binding abroad is not removed: %s",
                        network, exc)
            return {"rewrite_removed": False, "rewrite_error": str(exc)}
        return {"rewrite_removed": True}

    def drop_rewrite(self, care_of: str | None = None) -> bool:
        """The rewriting installed for a binding abroad removed (with
        ``care_of``: only if it is for that address); whether there was one.
        Kept in the state file until the table is gone, so a failure here is
        tried again by the next run that removes it."""
        held = self.state.rewrite
        if held is None or (care_of is not None and held["care_of"] != care_of):
            return False
        self.rewrites.remove()
        self.state.rewrite = None
        self._save()
        self.counters["binding_rewrite_removed"] += 1
        return True

    # -- where a binding is kept --------------------------------------------------

    def binds_at_home(self, network: str, tunnel: str | None = None) -> bool:
        """Whether a care-of from ``network`` is bound at the home domain
        rather than at ``network``'s AR: when ``network`` is of another
        domain.  Not when the proactive handover tunnel from it is ``tunnel``
        MPLS while the MN is in a home network: one controller then holds
        both ends of the tunnel, so it serves the home domain and ``network``
        alike, and keeps the binding with the tunnel it made.  An MN with no
        home domain (see :meth:`home_domain`) binds where the care-of is, as
        an MN of one domain does, and counts it (``binding_home_unknown``)."""
        home = self.home_domain()
        if home is None:
            self.counters["binding_home_unknown"] += 1
            LOG.warning("no identity user@realm is filed under its realm's domain: the MN "
                        "has no home domain, and binds %s where it is", network)
            return False
        if self.domain_of(network) == home:
            return False
        return not (tunnel == MPLS and self._current_domain() == home)

    def _current_domain(self) -> str | None:
        """The domain of the network the MN is in (None: no neighbour of it
        describes it)."""
        own = self._discovery()["network"]
        try:
            return self.domain_of(own) or _domain(self.candidate(own))
        except ProtocolError as exc:
            if exc.code != "not-a-candidate":
                raise
            return None

    def home_network(self) -> str:
        """A network of the home domain to bind at, with an MPA-SA: the one the
        MN is in, if it is one (pre-authenticated with now if need be); else
        the one it holds the newest MPA-SA with; else the first candidate of
        the home domain, pre-authenticated with now."""
        home = self.home_domain()
        if home is None:
            raise MnError("no-home-domain", "the credentials file holds no identity "
                          "user@realm filed under its realm's domain, the MN's home domain")
        discovery = self._discovery()
        own = discovery["network"]
        if self._current_domain() == home:
            if own not in self.state.entries:
                self.preauthenticate(own)
            return own
        held = sorted((e.established_at, n) for n, e in self.state.entries.items()
                      if e.domain == home)
        if held:
            return held[-1][1]
        for candidate in discovery["candidates"]:
            if _domain(candidate) == home:
                self.preauthenticate(candidate["network"], candidate)
                return candidate["network"]
        raise MnError("no-home-network", f"{home}, the MN's home domain, keeps its binding, "
                      f"and the MN holds no MPA-SA with a network of {home}, is in none, and "
                      f"{own} has none as a candidate")

    def bind_care_of(self, network: str, home: str, care_of: str, lifetime: int | None = None,
                     tunnel: str | None = None) -> dict:
        """``home`` bound to ``care_of``, an address from ``network``: at its
        AR, or at the home domain when :meth:`binds_at_home` says so (``tunnel``:
        the encapsulation of the tunnel from ``network``, if the caller has one).
        The result names the network that keeps the binding (``bound_at``)."""
        if not self.binds_at_home(network, tunnel):
            return {**self.bind(network, home, care_of, lifetime), "bound_at": network}
        at = self.home_network()
        if at != network:
            # At its own network the MN learnt only now is a home one, it is
            # no binding kept at home for a care-of elsewhere.
            self.counters["binding_at_home"] += 1
        try:
            bound = self._bind_at(at, home, care_of, lifetime)
        except ProtocolError as exc:
            if exc.code != "binding-refused" or at == network:
                raise
            # One controller serving both domains holds ``network`` as its own
            # and wants the binding under its SA, with the tunnel it knows.
            self.counters["binding_home_refused"] += 1
            LOG.info("%s refused to bind %s (%s); binding at %s", at, care_of, exc.message,
                     network)
            try:
                return {**self.bind(network, home, care_of, lifetime), "bound_at": network}
            except ProtocolError as again:
                raise ProtocolError(again.code, f"{again.message} (and {at}, of the home "
                                    f"domain, refused too: {exc.code}: {exc.message})",
                                    again.answer) from None
        return {**bound, "network": network, "bound_at": at}

    def bind_standby(self, network: str, home: str, care_of: str, interface: str) -> dict:
        """A standby binding of ``home`` to ``care_of`` (copy-and-forward, the
        MN's prepared ``interface`` in ``network``): at the home domain when
        ``network`` is of another one, which keeps the binding and copies at
        the active interface's PoA; else, or when one controller serving both
        refuses it there, at ``network``'s AR.  The result names the network
        that keeps it (``bound_at``): the loss is signalled there."""
        if self.binds_at_home(network):
            at = self.home_network()
            try:
                bound = self.bind(at, home, care_of, standby=True, interface=interface)
                self.counters["binding_standby_at_home"] += 1
                return {**bound, "network": network, "bound_at": at}
            except ProtocolError as exc:
                if exc.code != "binding-refused" or at == network:
                    raise
                self.counters["binding_home_refused"] += 1
                LOG.info("%s refused the standby %s (%s); binding it at %s", at, care_of,
                         exc.message, network)
        return {**self.bind(network, home, care_of, standby=True), "bound_at": network}

    def _bind_at(self, at: str, home: str, care_of: str, lifetime: int | None) -> dict:
        """:meth:`bind` at ``at``; once more under a new MPA-SA if the one held
        is gone or held (the MN has left ``at``)."""
        try:
            return self.bind(at, home, care_of, lifetime)
        except ProtocolError as exc:
            if exc.code not in SA_UNUSABLE:
                raise
        self.counters["binding_home_sa_renewed"] += 1
        self.preauthenticate(at, self.state.entries[at].candidate)
        return self.bind(at, home, care_of, lifetime)


def _domain(candidate: dict) -> str | None:
    return candidate.get("domain") or candidate.get("served_by")


def abroad(answer: dict) -> list[str] | None:
    """A binding-ack's correspondents if it says ``rewrite_at_mn`` (None: it
    does not); one that says half of it, says it of a standby, or says
    ``pending`` without it, is ``malformed``."""
    if "rewrite_at_mn" not in answer:
        if "pending" in answer:
            raise ProtocolError("malformed", "the binding-ack says pending without "
                                "rewrite_at_mn", answer)
        if "correspondents" in answer:
            raise ProtocolError("malformed", "the binding-ack lists correspondents without "
                                "rewrite_at_mn", answer)
        return None
    if "correspondents" not in answer:
        raise ProtocolError("malformed", "the binding-ack says rewrite_at_mn and lists no "
                            "correspondents", answer)
    return list(answer["correspondents"])
