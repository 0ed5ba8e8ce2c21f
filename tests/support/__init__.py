"""What test modules share: the fake OpenFlow network and the rigs built on it,
the in-process REST client, fakes of the MN's world, and the repository's paths.

Test modules import from here, never from one another (tests/unit/test_layout.py
holds them to it).  ``tests/`` is on ``sys.path`` (setup.cfg: ``pythonpath``).
"""
