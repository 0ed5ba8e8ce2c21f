#!/usr/bin/env bash
# Builds .venv/ with Ryu 4.34 and this package (editable). Safe to run again:
# a stamp keyed on setup.cfg skips the work when nothing changed.
#
# The venv is made from Debian's /usr/bin/python3 with system site packages so
# that the Mininet module Debian installs there is importable by the lab.
# Ryu 4.34's setup hooks break under pip's build isolation, so it is built
# with the venv's own setuptools (< 67) and --no-build-isolation.
set -euo pipefail
exec </dev/null

venv=.venv
stamp="$venv/.installed-$(sha256sum setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
[ -f "$stamp" ] && exit 0

if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
pip="$venv/bin/pip --disable-pip-version-check -q"
$pip install 'setuptools<67' wheel pbr
$pip install --no-build-isolation 'ryu==4.34'
$pip install --no-build-isolation -e '.[test]'
rm -f "$venv"/.installed-*
touch "$stamp"
echo "install-venv: $venv ready"
