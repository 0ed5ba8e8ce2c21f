#!/usr/bin/env bash
# The lab's and the demo's entry point in docker-compose.yml: runs "$@" once
# the container's /proc/sys/net is writable.
#
# Without `privileged`, Docker mounts /proc/sys read-only, and the lab sets
# its Mininet hosts' network settings there (sysctl net.ipv6.conf...,
# net.ipv4.conf...). Only /proc/sys/net is made writable, by a bind mount of
# its own: it holds the settings of the network namespaces the container
# made, none of the host's (which lives in another namespace: these services
# never use the host's network), while the rest of /proc/sys (kernel, vm,
# fs: the whole machine's) stays read-only. Podman with these capabilities
# mounts it writable already; then there is nothing to do.
set -euo pipefail
if ! [ -w /proc/sys/net/ipv4/conf/lo/forwarding ]; then
    mount --bind /proc/sys/net /proc/sys/net
    mount -o remount,bind,rw /proc/sys/net
fi
exec "$@"
