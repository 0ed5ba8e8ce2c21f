"""The lab's network: Mininet built from the neighbourhood graph, its console,
the real controller process beside it, and probes of what reaches what."""
