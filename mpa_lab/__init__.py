"""The lab and the experiment harness: Mininet with Open vSwitch and the real
controller process (``net``), the handover experiment (``experiment``), the
test traffic and its analysis (``traffic``), ``mpa-lab`` (``cli``) and
``mpa-topogen`` (``topogen``), and each domain's AAA server (``aaa``).  Its
data (topologies, scenarios) is in ``topologies/``; the credentials it makes
when it starts go under ``/run/mpa-lab/aaa/``."""
