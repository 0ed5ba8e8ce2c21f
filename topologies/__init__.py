"""The lab's data, no code: topology files and scenarios.

A package only so that `pip install .` carries the files and ``mpa-lab`` finds
them with importlib.resources; the code that uses them is in ``mpa_lab``.
"""
