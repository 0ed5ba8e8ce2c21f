"""Test traffic: the datagrams ``mpa-traffic`` sends and receives, their
analysis, and the streams the lab runs between its hosts."""
