"""Let Ryu 4.34 import on Python 3.11.

The only eventlet that runs on Python 3.11 (0.41) dropped
``eventlet.wsgi.ALREADY_HANDLED``, which ``ryu.app.wsgi`` imports and
``ryu.base.app_manager`` imports in turn.  Restore the name, only when it is
missing, before any of Ryu's app machinery is imported.
"""

import warnings


def patch_eventlet() -> None:
    # eventlet 0.41 warns on import that it is in maintenance mode; Ryu 4.34
    # has no other hub, so the warning tells our users nothing they can act on.
    warnings.filterwarnings("ignore", message="\nEventlet is deprecated")
    import eventlet.wsgi
    if not hasattr(eventlet.wsgi, "ALREADY_HANDLED"):
        eventlet.wsgi.ALREADY_HANDLED = object()
