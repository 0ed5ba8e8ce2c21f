"""Unit tests: no root, no Open vSwitch, no Mininet; one folder per package tested."""
