"""The HTTP opener every client of the controller's REST API uses (the MN,
the lab's tools, ``mpa-ctl``); standard library only, so that importing it
costs nothing."""

from __future__ import annotations

import ssl
import urllib.request


def direct_opener(ca_file: str | None = None):
    """An urllib opener that ignores *_proxy variables: the controller is never
    behind a web proxy, and a host's environment should not decide that.
    With ``ca_file``, HTTPS trusts that (private) CA."""
    handlers: list = [urllib.request.ProxyHandler({})]
    if ca_file is not None:
        handlers.append(urllib.request.HTTPSHandler(
            context=ssl.create_default_context(cafile=ca_file)))
    return urllib.request.build_opener(*handlers)
