#!/usr/bin/env bash
# Makes sure the engine has the Dockerfile's base image, debian:bookworm.
#
#   base-image.sh docker|podman
#
# Pulled when a registry answers; otherwise (no registry can be reached on
# the project's machines) built from Debian's packages with debootstrap
# --variant=minbase and imported. The root file system is kept as a tarball
# in $CACHE, so the second engine, or a later run, imports it in seconds.
set -euo pipefail
exec </dev/null

ENGINE=${1:?usage: base-image.sh docker|podman}
IMAGE=debian:bookworm
CACHE=${MPA_BASE_CACHE:-/var/cache/mpa-sdn}
MIRROR=${MPA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PULL_TIMEOUT_S=${MPA_PULL_TIMEOUT_S:-120}
case "$ENGINE" in
    docker) engine=(${DOCKER:-/usr/bin/docker}); ref=$IMAGE ;;
    podman) engine=(podman); ref=docker.io/library/$IMAGE ;;
    *) echo "base-image: unknown engine $ENGINE (docker or podman)" >&2; exit 2 ;;
esac

if "${engine[@]}" image inspect "$ref" >/dev/null 2>&1; then
    echo "base-image: $ENGINE has $ref"
    exit 0
fi
if timeout "$PULL_TIMEOUT_S" "${engine[@]}" pull -q "$ref" >/dev/null 2>&1; then
    echo "base-image: $ENGINE pulled $ref"
    exit 0
fi

tarball=$CACHE/debian-bookworm-minbase.tar
if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || { echo "base-image: needs debootstrap (make docker-engine)" >&2; exit 1; }
    echo "base-image: no registry answers; building $IMAGE with debootstrap from $MIRROR"
    mkdir -p "$CACHE"
    root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$root" "$tarball.part"' EXIT
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || { echo "base-image: debootstrap failed; see $CACHE/debootstrap.log" >&2; exit 1; }
    # As Debian's own image: updates and security fixes too, and apt's lists
    # and caches left out.
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    # apt keeps no downloaded packages nor caches in an image's layers, and
    # fetches no translations: the settings Debian's own image has.
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
    echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
    echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
    tar -C "$root" --numeric-owner -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
fi
# Debian's image runs bash when given no command; so does this one.
"${engine[@]}" import --change 'CMD ["bash"]' - "$ref" <"$tarball" >/dev/null
echo "base-image: $ENGINE imported $ref from $tarball"
