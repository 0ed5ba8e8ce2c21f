#!/usr/bin/env bash
# Installs the Debian packages the lab needs, only those that are missing, and
# starts Open vSwitch on the userspace datapath if it is not running.
# Safe to run again: it does nothing when everything is already in place.
set -euo pipefail

packages=(openvswitch-switch mininet iputils-ping iputils-arping ethtool iproute2 python3-venv python3-dev procps psmisc)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-system: missing Debian packages (${missing[*]}); run as root" >&2
        exit 1
    fi
    echo "install-system: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

[ "${1:-}" = "--no-start" ] && exit 0

# The kernel has no openvswitch module here, so ovs-vswitchd runs with the
# userspace (netdev) datapath only; ovs-ctl starts ovsdb-server and vswitchd.
if ! ovs-vsctl --timeout=2 show >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-system: Open vSwitch is not running; run as root" >&2
        exit 1
    fi
    echo "install-system: starting Open vSwitch"
    /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random --no-monitor >/dev/null 2>&1 \
        || /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random
    ovs-vsctl --timeout=10 show >/dev/null
fi
