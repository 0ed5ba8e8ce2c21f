"""The MN's half of the address rewriting for a binding its home domain
keeps to a care-of in another domain (RFC 6252 §6.3 step 3, across domains).

The home domain rewrites where the correspondents' traffic enters (the
destination, home address -> care-of) and leaves (the source, care-of ->
home address); between the care-of and the MN no switch of the home domain
sees the inner packets, so the ``binding-ack`` says ``rewrite_at_mn`` and
lists the ``correspondents``, and the MN does the other two rewrites itself,
for traffic with those correspondents only:

* arriving: from a correspondent to the care-of -> to the home address, at
  ``prerouting`` with priority ``raw``, before anything looks at the
  destination, so sockets bound to the home address receive it;
* leaving: from the home address to a correspondent -> from the care-of,
  in a ``route`` chain at ``output``, which routes the packet again after
  the change: the policy rule ``from nCoA`` (:mod:`mpa_mn.vxlan_end`) sends
  it into the tunnel before the move, and the physical interface takes it
  after, when the nCoA is there.

The kernel fixes the checksums.  Everything lives in one nftables table,
:data:`TABLE`, built by :func:`ruleset` (pure) and replaced whole by
:func:`replacement`: one ``nft -f -`` transaction that adds the table (a
no-op when it is there), deletes it and defines it anew.  A packet sees the
old rules or the new ones, never none, and applying the same binding again
changes nothing a packet can see; so the MN always replaces, rather than
reading ``nft -j list`` first and comparing, which would tie it to one nft
version's way of printing a ruleset.  :data:`REMOVAL` deletes the table the
same way, whether or not it is there, so a restart that lost track of it
still cleans up by the name alone.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from typing import Callable

from mpa_mn.vif import IP_TIMEOUT_S, Command, VifError

TABLE = "mpa_binding"
FAMILY = "ip"
# Adding a table that exists changes nothing; deleting one that does not fails
# the whole transaction: so each deletion follows an addition.
_RESET = f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"
REMOVAL = _RESET


class RewriteError(VifError):
    """``nft`` failed: the rewriting is not as the binding needs it."""


@dataclass(frozen=True)
class Rewrite:
    """What the MN rewrites for a binding kept abroad."""

    home_address: str
    care_of: str
    correspondents: tuple[str, ...]
    # The care-of the binding was at before it moved to ``care_of``: still
    # restored, since what the correspondents sent there before the move is
    # on its way (see :meth:`moving_from`).
    restoring: tuple[str, ...] = ()
    # A standby binding abroad (copy-and-forward, mpa_mn.standby): what the
    # MN sends is rewritten only when it leaves by this interface, the
    # prepared one, which takes the default route once the active one is
    # lost; until then the home domain's PoA rewrites for the active one.
    interface: str | None = None

    @classmethod
    def of(cls, home_address: str, care_of: str, correspondents,
           restoring=(), interface: str | None = None) -> "Rewrite":
        """The correspondents each once, in address order (a set's elements
        given twice are an error to nft)."""
        return cls(home_address, care_of, tuple(sorted(
            {str(ipaddress.IPv4Address(c)) for c in correspondents},
            key=ipaddress.IPv4Address)), tuple(str(ipaddress.IPv4Address(r))
                                               for r in restoring if r != care_of),
            interface)

    @classmethod
    def moving_from(cls, held: dict | None, home_address: str, care_of: str,
                    correspondents) -> "Rewrite":
        """The rewriting for a binding about to move to ``care_of`` from the
        one ``held`` (a :meth:`record`, or None): make before break, the old
        care-of is restored still, for what is addressed to it until the
        binding moves and what is on its way then; the next binding after
        this one drops it."""
        before = () if held is None or held["home_address"] != home_address \
            else (held["care_of"],)
        return cls.of(home_address, care_of, correspondents, before)

    def record(self) -> dict:
        return {"home_address": self.home_address, "care_of": self.care_of,
                "correspondents": list(self.correspondents),
                **({"restoring": list(self.restoring)} if self.restoring else {}),
                **({"interface": self.interface} if self.interface else {})}


def ruleset(rewrite: Rewrite) -> str:
    """The table, in nft's language.  With no correspondents the chains are
    empty: the table still says a binding abroad is held, and rewrites
    nothing."""
    cns = "{ " + ", ".join(rewrite.correspondents) + " }"
    home, care_of = rewrite.home_address, rewrite.care_of
    arriving = (care_of if not rewrite.restoring
                else "{ " + ", ".join((care_of, *rewrite.restoring)) + " }")
    restore = [f"\t\tip saddr {cns} ip daddr {arriving} ip daddr set {home}\n"]
    out = f'oifname "{rewrite.interface}" ' if rewrite.interface else ""
    leave = [f"\t\t{out}ip saddr {home} ip daddr {cns} ip saddr set {care_of}\n"]
    if not rewrite.correspondents:
        restore = leave = []
    return (f"table {FAMILY} {TABLE} {{\n"
            "\tchain restore {\n"
            "\t\ttype filter hook prerouting priority raw; policy accept;\n"
            + "".join(restore) +
            "\t}\n"
            "\tchain rewrite {\n"
            "\t\ttype route hook output priority mangle; policy accept;\n"
            + "".join(leave) +
            "\t}\n"
            "}\n")


def replacement(rewrite: Rewrite) -> str:
    """One transaction: whatever table was there goes, this one comes."""
    return _RESET + ruleset(rewrite)


class Nft(Command):
    """``nft``, with a clear error when it fails."""

    error = RewriteError
    package = "nftables (make setup)"

    def __init__(self, run: Callable = subprocess.run, command: str = "nft",
                 timeout: float = IP_TIMEOUT_S):
        super().__init__(run, command, timeout)

    def apply(self, text: str) -> None:
        """``text`` as one transaction (``nft -f -``): all of it, or nothing."""
        self("-f", "-", input=text)


class Rewrites:
    """The kernel's side: the table installed, replaced or removed."""

    enabled = True

    def __init__(self, nft: Nft | None = None):
        self.nft = nft or Nft()

    def install(self, rewrite: Rewrite) -> None:
        self.nft.apply(replacement(rewrite))

    def remove(self) -> None:
        self.nft.apply(REMOVAL)


class NoRewrites:
    """``--no-vif``: nothing installed (unprivileged use); the binding's
    result still says what the MN should rewrite."""

    enabled = False

    def install(self, rewrite: Rewrite) -> None:
        pass

    def remove(self) -> None:
        pass
