"""What the REST API, the metrics and the benchmarks read of mobility: one
view per MN (its binding and how it reaches the MN, its tunnels, its
handover in progress, its standby, its last handovers)."""

from __future__ import annotations

import collections

from mpa_sdn.mobility import tunnels as tn


class Views:
    """The read side (a part of :class:`~mpa_sdn.mobility.Mobility`, on its state)."""

    def views(self, wall: float, homes: dict[str, str]) -> list[dict]:
        """Per MN (``homes``: identity -> home address) and per identity with state."""
        identities = set(homes) | {t.identity for t in self.tunnels.values()} | {
            b.identity for b in self.bindings.values()} | set(self.handovers)
        recent = collections.defaultdict(list)
        for h in self.history:
            recent[h["identity"]].append(h)
        return [self.view_of(identity, wall, homes.get(identity), recent[identity])
                for identity in sorted(identities)]

    def view_of(self, identity: str, wall: float, home: str | None,
                recent: list[dict] | None = None) -> dict:
        """One MN's binding, tunnels, handover in progress, standby and last
        handovers (``recent``: its finished ones, if the caller has them)."""
        if recent is None:
            recent = [h for h in self.history if h["identity"] == identity]
        binding = self.binding_of(identity)
        standby = self._first(self.standbys, self._standbys_of.get(identity))
        handover = self.handovers.get(identity)
        reach = self.reach(binding) if binding else None
        return {
            "identity": identity, "home_address": home,
            "binding": None if binding is None else {
                "care_of": binding.care_of, "network": binding.network,
                "reach": None if reach is None else
                {"poa": reach.poa.id, "tunnel": reach.tunnel is not None},
                "expires_in": max(0, round(binding.expires - wall))},
            "tunnels": [{"address": t.address, "network": t.network, "poa": tn.poa_id(t),
                         "encapsulation": t.encapsulation, "outer": t.outer,
                         "labels": [t.down_label, t.up_label],
                         "expires_in": max(0, round(t.expires - wall))}
                        for t in (self.tunnels[a]
                                  for a in sorted(self._tunnels_of.get(identity)))],
            "handover": None if handover is None or handover.ended_at is not None
            else handover.view(),
            "standby": None if standby is None else {
                "care_of": standby.care_of, "network": standby.network,
                "copies": len(self._rings[standby.home][1])
                if standby.home in self._rings else 0,
                "expires_in": max(0, round(standby.expires - wall))},
            "last_handovers": recent[-5:],
        }
