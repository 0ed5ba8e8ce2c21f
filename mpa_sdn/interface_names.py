"""The Linux interface names the lab makes from a topology's ids.

Mininet names a node's interfaces ``<node>-eth<n>``: a switch's by the port
number, a host's by how many links it had before (0 for its link to its PoA,
1 for an MN's second interface, RFC 6252 §7.6.2).  The lab builds its links
with these names and renames a link's switch end with them when it moves the
link (the link-layer handover); the configuration check refuses the ids and
ports that would make a name Linux does not take, so a file that passes the
check also builds.  A switch's own interface (the bridge's local port) has
the switch's id for a name: shorter than any of its ports'.
"""

from __future__ import annotations

# Linux keeps an interface name in IFNAMSIZ (16) bytes, the last one a NUL.
MAX_NAME_BYTES = 15
# The host interfaces the lab can give an MN: its link to its PoA and a
# second one (Lab.add_interface).
MN_INTERFACES = 2


def port_name(switch: str, port: int) -> str:
    """The interface of a switch's port: a link's end or a PoA."""
    return f"{switch}-eth{port}"


def pht_port_name(switch: str) -> str:
    """A switch's VXLAN port (its ``pht_port``), where tunnels to MNs in
    other domains end: shorter than any of the switch's ports' names, which
    the configuration check measured."""
    return f"{switch}-pht"


def host_name(host: str, index: int) -> str:
    """A host's interface: ``index`` 0 is its link to its PoA."""
    return f"{host}-eth{index}"


def problem(name: str) -> str | None:
    """Why Linux would refuse ``name`` as an interface's name, or None."""
    size = len(name.encode())
    if size <= MAX_NAME_BYTES:
        return None
    return (f"the lab would name an interface {name} ({size} bytes); "
            f"Linux takes at most {MAX_NAME_BYTES}")
