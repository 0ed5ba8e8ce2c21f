"""mpa-mn: the mobile node's side of MPA (a library and the ``mpa-mn`` CLI)."""
