"""What the MN and the controller must agree on: the signalling messages,
PANA's codec, keys and timers (``pana*.py``), EAP's codec (``eap.py``), the
MPA-SA's key hierarchy from the MSK, the API tokens file, DHCP's numbers,
the file-validation toolkit and the REST clients' HTTP opener.

Both ends import this package; it imports neither (no ``mpa_sdn``, no Ryu,
no eventlet), so the MN and ``mpa-ctl`` load nothing of the controller.
tests/unit/test_layout.py holds every package to its import rules.
"""
