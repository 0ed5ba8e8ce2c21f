#!/usr/bin/env bash
# Installs the Debian packages the lab needs, only those that are missing, and
# starts Open vSwitch on the userspace datapath if it is not running.
# Safe to run again: it does nothing when everything is already in place.
set -euo pipefail
# Nothing here reads input, and Open vSwitch's tools abort when started with
# standard input closed (their socket lands on descriptor 0).
exec </dev/null

# --python: only what the virtual environment needs (make unit, no root
# needed when it is there). --no-start: install, but do not start OVS.
# --image: what an image runs (the lab, its AAA servers, the demo): as
# --no-start, without the tools only the tests use (test_packages).
python_packages=(python3-venv python3-dev)
# busybox (its udhcpc) and isc-dhcp-client: the ordinary DHCP clients the
# integration tests serve leases to. iperf3: the UDP and TCP streams the
# handover tests run across handovers. nftables: an MN bound to a care-of in
# another domain restores its home address itself (docs/inter-domain.md).
# freeradius: each domain's AAA server (mpa_lab/aaa/), run on a configuration
# of its own; freeradius-utils (radtest, radclient) to ask it by hand;
lab_packages=(openvswitch-switch mininet iputils-ping iputils-arping ethtool iproute2 procps psmisc
              busybox isc-dhcp-client iperf3 nftables
              freeradius freeradius-utils)
# eapoltest (eapol_test): an EAP peer over RADIUS that checks a server on its
# own; tshark: reads PANA and RADIUS in the integration tests' captures.
test_packages=(eapoltest tshark)
# --engine: the container engines docker-compose.yml is checked on instead
# (scripts/install-engine.sh): Debian's Docker and Compose 1.29, Podman with
# catatonit (its `init: true`), debootstrap (the base image when no registry
# answers), curl (make docker-check's requests). No recommends: no service
# units are wanted, scripts/dockerd.sh starts the daemon.
engine_packages=(docker.io docker-compose podman catatonit debootstrap python3-venv
                 ca-certificates curl)
mode=${1:-all}
case "$mode" in
    all|--no-start) packages=("${python_packages[@]}" "${lab_packages[@]}" "${test_packages[@]}") ;;
    --image) packages=("${python_packages[@]}" "${lab_packages[@]}") ;;
    --python) packages=("${python_packages[@]}") ;;
    --engine) packages=("${engine_packages[@]}") ;;
    *) echo "usage: install-system.sh [--python|--no-start|--image|--engine]" >&2; exit 2 ;;
esac

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
    # iperf3 asks whether to start its daemon at boot: the tests start their
    # own servers, so the answer is no, given before the question comes.
    echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections
    # Wireshark asks whether non-root users may capture: no, and no question.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian's own FreeRADIUS service binds 1812 on every address, where the
# lab's domains run servers of their own: stopped and disabled if the
# package started it. Without systemd there is no such service to stop.
if [ -d /run/systemd/system ] && systemctl list-unit-files freeradius.service >/dev/null 2>&1; then
    if systemctl is-active --quiet freeradius.service || systemctl is-enabled --quiet freeradius.service; then
        echo "install-system: stopping and disabling Debian's freeradius service"
        systemctl disable --now freeradius.service >/dev/null 2>&1 || true
    fi
elif [ -x /etc/init.d/freeradius ] && /etc/init.d/freeradius status >/dev/null 2>&1; then
    echo "install-system: stopping Debian's freeradius service"
    /etc/init.d/freeradius stop >/dev/null 2>&1 || true
    command -v update-rc.d >/dev/null && update-rc.d freeradius disable >/dev/null 2>&1 || true
fi

[ "$mode" = all ] || exit 0

# The kernel has no openvswitch module here, so ovs-vswitchd runs with the
# userspace (netdev) datapath only; ovs-ctl starts ovsdb-server and vswitchd.
# Both daemons: the database alone answers ovs-vsctl, but without
# ovs-vswitchd no bridge forwards anything.
ovs_up() {
    ovs-vsctl --timeout=2 show >/dev/null 2>&1 &&
        ovs-appctl --timeout=2 -t ovs-vswitchd version >/dev/null 2>&1
}

if ! ovs_up; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-system: Open vSwitch is not running; run as root" >&2
        exit 1
    fi
    echo "install-system: starting Open vSwitch (userspace datapath)"
    ctl=/usr/share/openvswitch/scripts/ovs-ctl
    # Daemons killed without a clean stop leave pid files behind that make
    # ovs-ctl believe they still run: stop what may be left, then start.
    "$ctl" stop >/dev/null 2>&1 || true
    rm -f /var/run/openvswitch/ovsdb-server.pid /var/run/openvswitch/ovs-vswitchd.pid
    # The daemons outlive us: they must not inherit our descriptors beyond
    # stdio, or a lock held by whoever ran make (flock) is held forever.
    (
        for fd in /proc/self/fd/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] && exec {fd}>&-
        done
        "$ctl" start --system-id=random --no-monitor 2>&1 | grep -v "ulimit" || true
    )
    for _ in $(seq 50); do ovs_up && break; sleep 0.2; done
    ovs_up || { echo "install-system: Open vSwitch did not start" >&2; exit 1; }
fi
