#!/usr/bin/env bash
# `make docker-demo` / `make podman-demo`: the full demo (`make demo`) in a
# container of docker-compose.yml's `demo` service, on Docker or Podman, with
# its results and plots in ./results/demo and ./results/demo-inter-domain.
#
# The same steps as README.md's "With Docker or Podman", with what this
# machine kind needs first: the engine installed, dockerd started (and
# stopped at the end if this script started it), the base image made. The
# demo runs in a network namespace of its own, with its own Open vSwitch
# and Mininet: the host's OVS, labs and controllers never see it.
set -euo pipefail
exec </dev/null
cd "$(dirname "$0")/.."

ENGINE=${1:?usage: container-demo.sh docker|podman}
case "$ENGINE" in
    docker) compose=(docker-compose --ansi never) ;;
    # podman-compose does not pass build.network on; the docker format keeps
    # the image's HEALTHCHECK (OCI images have none).
    podman) compose=(.engine/bin/podman-compose --podman-build-args="--network=host --format=docker") ;;
    *) echo "container-demo: unknown engine $ENGINE (docker or podman)" >&2; exit 2 ;;
esac

bash scripts/install-engine.sh
started=0
if [ "$ENGINE" = docker ] && ! bash scripts/dockerd.sh status; then
    bash scripts/dockerd.sh start
    started=1
fi
# A compose project of its own: its network and volumes go at the end, and a
# controller this checkout runs with `up` is left alone.
export COMPOSE_PROJECT_NAME=mpa-sdn-demo-$$
finish() {
    "${compose[@]}" --profile demo down -v >/dev/null 2>&1 || true
    [ $started = 0 ] || bash scripts/dockerd.sh stop
}
trap finish EXIT
bash scripts/base-image.sh "$ENGINE"

if [ -z "${EXTRA_CA_CERTS:-}" ] && compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    EXTRA_CA_CERTS=$(cat /usr/local/share/ca-certificates/*.crt)
fi
export EXTRA_CA_CERTS=${EXTRA_CA_CERTS:-}
export SOURCE_COMMIT=$(git describe --always --dirty 2>/dev/null || echo unknown)
mkdir -p results
# podman-compose knows a service of a profile only with that profile.
"${compose[@]}" --profile demo build demo
begun=$SECONDS
status=0
"${compose[@]}" --profile demo run --rm -T demo || status=$?
echo "container-demo: $ENGINE: make demo in a container exited $status after $((SECONDS - begun)) s;" \
     "results in results/demo and results/demo-inter-domain"
exit $status
