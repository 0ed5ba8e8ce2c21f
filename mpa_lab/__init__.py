"""The lab and the experiment harness: Mininet with Open vSwitch and the real
controller process (``net``), the handover experiment (``experiment``), the
test traffic and its analysis (``traffic``), ``mpa-lab`` (``cli``) and
``mpa-topogen`` (``topogen``).  Its data (topologies, scenarios, credentials)
is in ``topologies/``."""
