#!/usr/bin/env bash
# Installs the container engines the Docker and Podman set-ups are checked
# on, only what is missing: Debian's packages (install-system.sh --engine),
# and podman-compose from PyPI in a virtual environment of its own, .engine/
# (Debian's is older). Starts nothing: scripts/dockerd.sh starts dockerd.
set -euo pipefail
exec </dev/null
cd "$(dirname "$0")/.."

bash scripts/install-system.sh --engine
# The version the README's Podman steps were checked with.
PODMAN_COMPOSE=podman-compose==1.6.0
if ! .engine/bin/podman-compose version >/dev/null 2>&1; then
    /usr/bin/python3 -m venv .engine
    .engine/bin/pip --disable-pip-version-check -q install "$PODMAN_COMPOSE"
    echo "install-engine: .engine/bin/podman-compose ready"
fi
