"""The API's JSON as text for people: tables, summaries, one line per event.

Each function takes what an operation answered (the OpenAPI document's
schemas) and returns lines; a missing or null value is shown as ``-``.
"""

from __future__ import annotations

import json

FINAL = ("done", "failed")
ENDED = ("completed", "switched-back")


def cell(value) -> str:
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(cell(v) for v in value)
    return str(value)


def table(headers: list[str], rows: list[list]) -> list[str]:
    """Columns left-aligned, two spaces apart; a header line even with no rows."""
    texts = [[cell(value) for value in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in texts]) for i, h in enumerate(headers)]
    return ["  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip()
            for row in [headers] + texts]


def indent(lines: list[str], by: str = "  ") -> list[str]:
    return [by + line for line in lines]


def fields(pairs: list[tuple[str, object]]) -> list[str]:
    """``name  value`` lines, the values in one column."""
    width = max(len(name) for name, _ in pairs)
    return [f"{name.ljust(width)}  {cell(value)}" for name, value in pairs]


def params(values: dict) -> str:
    return " ".join(f"{k}={json.dumps(v) if isinstance(v, bool) else cell(v)}"
                    for k, v in values.items() if v is not None) or "-"


# -- handovers ---------------------------------------------------------------------------

def buffer_counters(buffer: dict) -> str:
    mean = buffer.get("mean_delay_ms")
    return (f"{buffer['buffered']} held ({buffer['bytes']} bytes), {buffer['packets']} in, "
            f"{buffer['flushed']} flushed, {buffer['dropped']} dropped, delay max "
            f"{buffer['max_delay_ms']:g} ms" + (f" mean {mean:g} ms" if mean is not None else ""))


def handover_line(h: dict, identity: bool = True) -> str:
    """``#1 mn1@domain-a net-a1 -> net-b1 completed 75 ms (buffer)``"""
    who = f" {h['identity']}" if identity else ""
    phase = h["phase"] + (f" ({h['reason']})" if h.get("reason") else "")
    total = f" {h['total_ms']:g} ms" if h.get("total_ms") is not None else ""
    return (f"#{h['id']}{who} {h.get('from_network') or '?'} -> {h['network']} {phase}{total} "
            f"({h['mode']})")


def handovers(items: list[dict]) -> list[str]:
    return table(["ID", "IDENTITY", "FROM", "TO", "PHASE", "MODE", "TO-POA", "ARRIVAL",
                  "TOTAL-MS", "BUFFERED", "DROPPED", "REASON"],
                 [[h["id"], h["identity"], h.get("from_network"), h["network"], h["phase"],
                   h["mode"], h.get("to_poa"), h.get("arrival"), h.get("total_ms"),
                   h["buffer"]["packets"], h["buffer"]["dropped"], h.get("reason")]
                  for h in items])


# -- status ------------------------------------------------------------------------------

def status(url: str, switches: list[dict], mns: list[dict], history: list[dict],
           last: int = 5) -> list[str]:
    connected = [s for s in switches if s["connected"]]
    reconciled = [s for s in switches if s["reconciled"]]
    down = [s["id"] for s in switches if not s["connected"]]
    in_progress = [h for h in history if h["phase"] not in ENDED]
    finished = [h for h in history if h["phase"] in ENDED]
    lines = fields([
        ("controller", url),
        ("switches", f"{len(connected)}/{len(switches)} connected, {len(reconciled)} reconciled"
                     + (f" (not connected: {', '.join(down)})" if down else "")),
        ("mobile nodes", f"{len(mns)}, {sum(1 for m in mns if m['binding'])} with a binding"),
        ("handovers", f"{len(in_progress)} in progress"),
    ])
    lines += indent([handover_line(h) for h in in_progress], "  now   ")
    if finished:
        lines.append(f"last handovers ({min(last, len(finished))} of {len(finished)}, "
                     "oldest first):")
        lines += indent([handover_line(h) for h in finished[-last:]])
    return lines


# -- networks, switches, counters, policy ---------------------------------------------------

def networks(items: list[dict]) -> list[str]:
    return table(["ID", "ROLE", "DOMAIN", "PREFIX", "GATEWAY", "AR", "POAS", "POOL",
                  "NEIGHBOURS"],
                 [[n["id"], n["role"], n["domain"], n["prefix"], n["gateway"]["address"],
                   n["access_router"]["switch"], [p["id"] for p in n["poas"]],
                   f"{n['pool']['first']}-{n['pool']['last']}" if n["pool"] else None,
                   n["neighbours"]] for n in items])


def switches(items: list[dict]) -> list[str]:
    def last(s):
        r = s.get("last_reconcile")
        return f"+{r.get('added', 0)} -{r.get('deleted', 0)} ={r.get('kept', 0)}" if r else None
    return table(["ID", "DPID", "CONNECTED", "ADDRESS", "FOR-S", "RECONCILED", "FLOWS",
                  "LAST-RECONCILE", "OF-ERRORS", "POAS"],
                 [[s["id"], s["dpid_hex"], s["connected"], s.get("address"),
                   round(s["connected_for_s"]) if s.get("connected_for_s") is not None
                   else None, s["reconciled"], s["expected_flows"], last(s),
                   s["openflow_errors"], [p["id"] for p in s["poas"]]] for s in items])


def counters(values: dict, prefix: str | None) -> list[str]:
    chosen = sorted((k, v) for k, v in values.items() if k.startswith(prefix or ""))
    return fields(chosen) if chosen else []


def policy(view: dict) -> list[str]:
    changed = set(view.get("changed", []))
    pairs = [(k, f"{cell(v)}{'  (set through the API)' if k in changed else ''}")
             for k, v in view.items() if k not in ("network", "changed")]
    return [f"policy of {view['network']}"] + indent(fields(pairs))


# -- mobile nodes ---------------------------------------------------------------------------

def binding(b: dict | None) -> str | None:
    if not b:
        return None
    reach = b.get("reach")
    where = ("not reachable now" if reach is None else
             f"tunnel at {reach['poa']}" if reach["tunnel"] else f"at {reach['poa']}")
    return f"{b['network']} {b['care_of']} ({where})"


def mobile_nodes(items: list[dict]) -> list[str]:
    return table(["IDENTITY", "HOME", "BINDING", "TUNNELS", "HANDOVER"],
                 [[m["identity"], m.get("home_address"), binding(m["binding"]),
                   [t["network"] for t in m["tunnels"]],
                   f"{m['handover']['phase']} -> {m['handover']['network']}"
                   if m.get("handover") else None] for m in items])


def instruction(i: dict | None) -> str | None:
    if i is None:
        return None
    target = i.get("networks") or i.get("network")
    extra = ", ".join(f"{k} {i[k]}" for k in ("poa", "scope") if i.get(k))
    return f"#{i['id']} {i['do']} {cell(target)}" + (f" ({extra})" if extra else "")


def mobile_node(m: dict) -> list[str]:
    standby = m.get("standby")
    lines = [m["identity"]] + indent(fields([
        ("home address", m.get("home_address")),
        ("binding", binding(m["binding"]) and
         f"{binding(m['binding'])}, expires in {m['binding']['expires_in']} s"),
        ("attached", "; ".join(f"{a['mac']} {a['address']} at {a['poa']} ({a['network']})"
                               for a in m["attached"]) or None),
        ("standby", standby and f"{standby['network']} {standby['care_of']}, "
                                f"{standby['copies']} copies"),
    ]))
    h = m.get("handover")
    lines.append("handover: " + ("none in progress" if h is None else handover_line(h, False)))
    if h is not None:
        lines += indent(fields([("from", f"{h.get('from_poa') or '-'} ({h.get('from_network')})"),
                                ("to", f"{h.get('to_poa') or '-'} ({h['network']}), nCoA "
                                       f"{h['address']}"),
                                ("buffer", buffer_counters(h["buffer"]))]))
    sections = [
        ("MPA-SAs", ["NETWORK", "DOMAIN", "STATE", "EXPIRES-S", "HELD-S", "MAC", "SA"],
         [[s["network"], s["domain"], s["state"], s["expires_in"], s.get("held_for"),
           s["mn_mac"], s["sa"]] for s in m["sas"]]),
        ("leases", ["NETWORK", "ADDRESS", "STATE", "EXPIRES-S", "MAC"],
         [[x["network"], x["address"], x["state"], x["expires_in"], x["mac"]]
          for x in m["leases"]]),
        ("tunnels", ["NETWORK", "ADDRESS", "POA", "LABELS", "EXPIRES-S"],
         [[t["network"], t["address"], t["poa"], t["labels"], t["expires_in"]]
          for t in m["tunnels"]]),
    ]
    for title, headers, rows in sections:
        lines.append(f"{title}:" + ("" if rows else " none"))
        lines += indent(table(headers, rows)) if rows else []
    lines.append("pending instructions:" + ("" if m["instructions"] else " none"))
    lines += indent([instruction(i) for i in m["instructions"]])
    lines.append("recent actions:" + ("" if m["actions"] else " none"))
    lines += indent(actions(m["actions"])) if m["actions"] else []
    if m.get("last_handovers"):
        lines.append("last handovers:")
        lines += indent([handover_line(x, False) for x in m["last_handovers"]])
    return lines


# -- actions ------------------------------------------------------------------------------

def error(a: dict) -> str | None:
    """An action's error as ``code: detail``, or None."""
    e = a.get("error")
    return f"{e['code']}: {e['detail']}" if e else None


def action_line(a: dict) -> str:
    """``action 2 pre-switch mn1@domain-a: failed (switched-back: ...)``"""
    return (f"action {a['id']} {a['action']} {a['identity']}: {a['state']}"
            + (f" ({error(a)})" if error(a) else ""))


def action(a: dict) -> list[str]:
    result = dict(a.get("result") or {})
    handover = result.pop("handover", None)
    pairs = [("params", params(a["params"])),
             ("requested", f"by {a['requested_by']} at {a['created_at']}, updated "
                           f"{a['updated_at']}"),
             ("instruction", instruction(a.get("instruction")) or "none (nothing for the MN)")]
    if isinstance(handover, dict):     # a pre-switch's: the handover it started
        pairs.append(("handover", handover_line(handover, False)))
    elif a.get("handover") is not None or handover is not None:   # a cancel's: its id
        pairs.append(("handover", f"#{a.get('handover') or handover}"))
    if result:
        pairs.append(("result", json.dumps(result, sort_keys=True, separators=(",", ":"))))
    return [action_line(a)] + indent(fields(pairs))


def actions(items: list[dict]) -> list[str]:
    return table(["ID", "IDENTITY", "ACTION", "STATE", "PARAMS", "UPDATED", "ERROR"],
                 [[a["id"], a["identity"], a["action"], a["state"], params(a["params"]),
                   a["updated_at"], error(a)] for a in items])


# -- events -------------------------------------------------------------------------------

def event_summary(e: dict) -> str:
    d = e.get("data") or {}
    kind = e["type"]
    if kind == "reset":
        return f"events after {d.get('after')} were lost: read the state again"
    if kind == "switch":
        if not d.get("connected"):
            return "disconnected"
        return "connected" + (f" from {d['address']}" if d.get("address") else "")
    if kind == "sa":
        return f"MPA-SA {str(d.get('sa', ''))[:8]} {d.get('state') or 'gone'} ({d.get('mn_mac')})"
    if kind == "lease":
        return f"{d.get('address')} {d.get('state')} ({d.get('mac')})"
    if kind == "tunnel":
        return f"{d.get('address')} {'up' if d.get('up') else 'down'} at {d.get('poa')}"
    if kind == "binding":
        return f"{d.get('home_address')} -> {d.get('care_of') or 'removed'}"
    if kind == "handover":
        line = handover_line(d, False) if "phase" in d else json.dumps(d, sort_keys=True)
        buffer = d.get("buffer")
        return line + (f"; buffer {buffer['buffered']} held, {buffer['flushed']} flushed, "
                       f"{buffer['dropped']} dropped" if buffer and buffer["packets"] else "")
    if kind == "action" and "state" in d:
        return f"#{d['id']} {d['action']}: {d['state']}" + (f" ({error(d)})" if error(d) else "")
    if kind == "policy":
        return f"policy changed: {params({k: d[k] for k in d.get('changed', []) if k in d})}"
    return json.dumps(d, sort_keys=True, separators=(",", ":"))[:200]


def event_line(e: dict) -> str:
    """time, type, whom it is about, what happened."""
    d = e.get("data") or {}
    who = e.get("identity") or (d.get("switch") if e["type"] == "switch" else None) \
        or e.get("network")
    where = f" [{e['network']}]" if e.get("identity") and e.get("network") else ""
    return f"{e.get('time') or '-':24}  {e['type']:9}  {cell(who)}{where}  {event_summary(e)}"
