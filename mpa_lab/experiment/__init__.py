"""The handover experiment (``mpa-lab run``): the scenario file, the runner,
the handover driver, the MN's pre-configuration, results, plots and progress."""
