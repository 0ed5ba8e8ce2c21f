#!/usr/bin/env bash
# Builds .venv/ with Ryu 4.34 and this package (editable). Safe to run again:
# a stamp keyed on setup.cfg and the mode skips the work when nothing changed.
#
#   install-venv.sh [--runtime] [--deps-only]
#     --runtime    without the test extras (the image the controller runs in)
#     --deps-only  the dependencies alone, not this package: the image installs
#                  them in a layer of their own, before the sources are copied
# MPA_VENV=runtime in the environment means --runtime (the image sets it, so
# that `make demo` there finds its virtual environment complete).
#
# The venv is made from Debian's /usr/bin/python3 with system site packages so
# that the Mininet module Debian installs there is importable by the lab.
# Ryu 4.34's setup hooks break under pip's build isolation, so it is built
# with the venv's own setuptools (< 67) and --no-build-isolation.
set -euo pipefail
exec </dev/null

runtime=0 deps_only=0
[ "${MPA_VENV:-}" = runtime ] && runtime=1
for arg in "$@"; do
    case "$arg" in
        --runtime) runtime=1 ;;
        --deps-only) deps_only=1 ;;
        *) echo "usage: install-venv.sh [--runtime] [--deps-only]" >&2; exit 2 ;;
    esac
done
extras="[test]"; [ $runtime = 1 ] && extras=""

venv=.venv
key=$( (sha256sum setup.cfg pyproject.toml; echo "$extras $deps_only") | sha256sum | cut -c1-16)
stamp="$venv/.installed-$key"
[ -f "$stamp" ] && exit 0

if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
pip="$venv/bin/pip --disable-pip-version-check -q"
$pip install 'setuptools<67' wheel pbr
$pip install --no-build-isolation 'ryu==4.34'
if [ $deps_only = 1 ]; then
    # setup.cfg's requirements, read as setuptools reads them.
    "$venv/bin/python" - "$runtime" >"$venv/requirements.txt" <<'PY'
import configparser, sys
cfg = configparser.ConfigParser()
cfg.read("setup.cfg")
sections = [cfg["options"]["install_requires"]]
if sys.argv[1] != "1":
    sections.append(cfg["options.extras_require"]["test"])
for section in sections:
    print("\n".join(line for line in section.splitlines() if line.strip()))
PY
    $pip install --no-build-isolation -r "$venv/requirements.txt"
else
    $pip install --no-build-isolation -e ".$extras"
fi
rm -f "$venv"/.installed-*
touch "$stamp"
echo "install-venv: $venv ready"
