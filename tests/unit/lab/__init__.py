"""The lab and experiment harness (mpa_lab) that runs without Mininet."""
