"""What ``mpa-mn`` prints for people: one line per result (``--json`` prints
the results themselves)."""

from __future__ import annotations

from mpa_mn.channels import DEFAULT_PORT


def _text(head: str, *clauses) -> str:
    """``head`` and each clause that is there (a clause left out is falsy)."""
    return head + "".join(clause for clause in clauses if clause)


def candidate_line(c: dict) -> str:
    aa = c["aa"]
    return _text(f"  {c['network']}: served by {c['served_by']}, prefix {c.get('prefix')}, "
                 f"AA {aa['address']}:{aa.get('port', DEFAULT_PORT)}",
                 c.get("l2_handover_ms") is not None
                 and f", L2 handover {c.get('l2_handover_ms'):g} ms")


def _config_text(config: dict) -> str:
    return _text(f"nCoA {config['address']} (/{config['prefix_len']}), router "
                 f"{config['router']} at {config['gateway_mac']}, lease {config['lease_time']} s",
                 config.get("dns") and f", DNS {' '.join(config['dns'])}",
                 config.get("interface") and f", on {config['interface']}")


def _preauth_text(r: dict) -> str:
    return (f"pre-authenticated with {r['domain']} as {r['identity']} by {r['method']} "
            f"(PANA session {r['pana_session']}), MPA-SA {r['sa'][:8]}, "
            f"lifetime {r['lifetime']} s")


def _release_text(r: dict) -> str:
    what = "the nCoA and the MPA-SA" if r["scope"] == "all" else "the nCoA"
    return _text(f"released {what}", r["interface_removed"] and " (interface removed)")


def _state_text(state: dict) -> str:
    return _text(f"handover {state['phase']}", state.get("buffered") is not None
                 and f", {state.get('buffered')} packet(s) buffered")


def _attach_text(r: dict) -> str:
    return _text(f"attached as {r['address']}/{r['prefix_len']} on {r['interface']}, router "
                 f"{r['router']} at {r['gateway_mac']}",
                 r["removed"] and f", {' '.join(r['removed'])} removed",
                 not r["gratuitous_arp"]
                 and f" (no gratuitous ARP: {r.get('gratuitous_arp_error')})",
                 "arrived" in r and f"; {_state_text(r.get('arrived'))}",
                 r.get("vif_error") and f" (the vif is still there: {r.get('vif_error')})")


def _tunnel_text(t: dict, carrying: str = "") -> str:
    """The tunnel's kind and where it ends (a ``tunnel`` result, or a held one);
    ``carrying``: what is said of what it carries."""
    if t["encapsulation"] == "vxlan":
        return _text(f"VXLAN tunnel{carrying}, key {t['key']}, from the nAR at "
                     f"{t['endpoint']} to {t['outer']} (UDP {t['udp_port']})",
                     t.get("interface") and f", ended on {t.get('interface')}")
    return f"MPLS tunnel{carrying} to PoA {t['poa']}"


def _bind_text(r: dict) -> str:
    return _text(f"{r['home_address']} bound to care-of {r['care_of']}, "
                 f"lifetime {r['lifetime']} s", _kept_text(r, r.get("network")))


def _kept_text(binding: dict, network: str | None) -> str:
    """Where a binding is kept when that is not ``network``'s AR (the home
    domain's), and the MN's rewriting for it."""
    return _text("", binding.get("bound_at") not in (None, network)
                 and f", kept by the home domain at {binding.get('bound_at')}",
                 binding.get("rewrite_at_mn") and _rewrite_text(binding),
                 binding.get("rewrite_removed") and "; the MN's rewriting removed")


def _rewrite_text(r: dict) -> str:
    cns = ", ".join(r["correspondents"]) or "none"
    return (f"; the MN rewrites for correspondents {cns}"
            + ("" if r["rewrite_installed"] else " (not installed: --no-vif)"))


def _link_text(r: dict) -> str | None:
    return "link_up_at" in r and f"link down {(r['link_up_at'] - r['link_down_at']) / 1e6:.1f} ms"


def _handover_text(r: dict) -> str:
    text = _text(f"ready with nCoA {r['address']}, {_tunnel_text(r['tunnel'])}, "
                 f"{r['home_address']} bound to it",
                 _kept_text(r["binding"], r.get("network")),
                 "pre_switch" in r and f", {_state_text(r.get('pre_switch'))}",
                 "pre_switch" not in r and ", no pre-switch")
    if "attached_at" not in r:
        return text
    return f"{text}; {_link_text(r)}; {_attach_text(r)}"


def _reactive_text(r: dict) -> str:
    bound = _text(f"; router {r['router']}, {r['home_address']} bound to it, lifetime "
                  f"{r['binding']['lifetime']} s",
                  "link_down_at" in r and f", {(r['bound_at'] - r['link_down_at']) / 1e6:.0f} "
                  "ms after the link went down")
    return _text(f"{_link_text(r) or 'no link switch awaited'}; {r['address']}/"
                 f"{r['prefix_len']} by DHCP from {r['server']}",
                 r["dhcp"]["declined"] and f" ({len(r['dhcp']['declined'])} declined before)",
                 f", {r['dad']['probes']} ARP probe(s) unanswered" if r["dad"]["probes"]
                 else ", no DAD", f"; authenticated by PANA, MPA-SA {r['sa'][:8]}", bound)


def _standby_text(r: dict) -> str:
    text = _text(f"{r['interface']} standing by with nCoA {r['address']}/{r['prefix_len']}, "
                 f"{r['home_address']} bound to it if {r['old_interface']} is lost",
                 not r["gratuitous_arp"]
                 and f" (no gratuitous ARP: {r.get('gratuitous_arp_error')})")
    if "signalled_at" not in r:
        return text
    return (f"{text}; {r['old_interface']} lost, link-lost sent with {r['delivered']} "
            f"digest(s): handover {r['link_lost']['phase']}")


TEXT = {
    "preauth": _preauth_text,
    "up": lambda r: f"{_preauth_text(r)}; {_config_text(r['config'])}",
    "configure": _config_text,
    "release": _release_text,
    "resume": lambda r: f"resumed; the MPA-SA is {r['state']}",
    "ping": lambda r: f"the AA answered PANA's Ping on session {r['pana_session']}",
    "terminate": lambda r: f"PANA session {r['pana_session']} terminated: the MPA-SA and "
                           "the nCoA are gone",
    "tunnel": lambda r: f"{_tunnel_text(r, ' for ' + r['address'])}, "
                        f"lifetime {r['lifetime']} s",
    "untunnel": lambda r: "tunnel released",
    "bind": lambda r: _bind_text(r),
    "switch": _state_text,
    "attach": _attach_text,
    "handover": _handover_text,
    "reactive": _reactive_text,
    "standby": _standby_text,
}


def status_line(n: dict) -> str:
    line = (f"{n['network']}: MPA-SA {n['sa'][:8]} with {n['domain']} as {n['identity']}, "
            + ("expired" if n["expired"] else f"expires in {n['expires_in']} s")
            + f", next seq {n['next_seq']}")
    if n["config"]:
        line += f"; nCoA {n['config']['address']}"
        if n["interface"]:
            line += f" on {n['interface']}"
        line += f", lease ends in {n['lease_expires_in']} s"
        if n.get("tunnel"):
            line += f"; {_tunnel_text(n['tunnel'])}, ends in {n['tunnel']['expires_in']} s"
    else:
        line += "; not configured"
    return line


def rewrite_line(rewrite: dict) -> str:
    """The rewriting installed for a binding abroad (the state file's)."""
    restoring = rewrite.get("restoring")
    return (f"{rewrite['home_address']} bound to care-of {rewrite['care_of']} at "
            f"{rewrite['network']}, the MN rewriting for correspondents "
            f"{', '.join(rewrite['correspondents']) or 'none'} (nftables table mpa_binding)"
            + (f"; restoring also {', '.join(restoring)}, the care-of it moved from"
               if restoring else ""))


def result_line(command: str, network: str, result: dict) -> str:
    return f"{network}: {TEXT[command]({'network': network, **result})}"
