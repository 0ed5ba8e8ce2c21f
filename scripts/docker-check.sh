#!/usr/bin/env bash
# CI's check of docker-compose.yml and the Dockerfile on a real Docker engine
# (`make docker-check`, run by .ci/run): installs Debian's docker.io and
# docker-compose where missing, starts dockerd if none answers (and stops it
# at the end, also on failure), makes the debian:bookworm base image when no
# registry answers, builds the image, makes a token through it, brings the
# controller up with compose, and checks its health, the OpenAPI document,
# a 401 without a token and a 200 with one; then takes it all down.
#
# It touches only what it makes: a compose project of its own (containers,
# network, volume), the mpa-sdn:check image, a temporary tokens file, and
# host ports the engine picks on 127.0.0.1 (a lab on the host may hold 6653
# and 8080). The image and its base stay, so that a later run reuses their
# layers; a cold run builds everything.
set -euo pipefail
exec </dev/null
cd "$(dirname "$0")/.."

HEALTH_TIMEOUT_S=${MPA_HEALTH_TIMEOUT_S:-120}
BUILD_TIMEOUT_S=${MPA_BUILD_TIMEOUT_S:-600}
LOG_DIR=${MPA_CHECK_LOG_DIR:-results/docker-check}
DOCKER=${DOCKER:-/usr/bin/docker}

step() { printf 'docker-check: %-44s (%ds)\n' "$*" $((SECONDS - begun)); }
fail() { echo "docker-check: FAILED: $*" >&2; exit 1; }
begun=$SECONDS

# One check at a time on a machine: the second waits rather than stopping
# the daemon under the first.
mkdir -p /run/lock
exec 9>/run/lock/mpa-sdn-docker-check.lock
flock 9

mkdir -p "$LOG_DIR"
bash scripts/install-engine.sh
step "engine installed"
started=0
if ! bash scripts/dockerd.sh status; then
    bash scripts/dockerd.sh start
    started=1
fi

work=$(mktemp -d)
export COMPOSE_PROJECT_NAME=mpa-sdn-check-$$
export MPA_IMAGE=mpa-sdn:check MPA_SECRETS=$work/secrets
# Empty: ports the engine picks, on 127.0.0.1.
export MPA_OPENFLOW_PORT= MPA_REST_PORT=
compose=(docker-compose --ansi never -f docker-compose.yml)
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ $status -ne 0 ] && [ -n "${id:-}" ]; then
        echo "docker-check: the controller's log:" >&2
        "$DOCKER" logs --tail 30 "$id" >&2 2>&1 || true
    fi
    "${compose[@]}" down -v --remove-orphans >>"$LOG_DIR/compose.log" 2>&1 || true
    rm -rf "$work"
    [ $started = 0 ] || bash scripts/dockerd.sh stop
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash scripts/base-image.sh docker
step "base image"

# The machine's own extra CAs (an intercepting proxy's) for pip in the build.
if [ -z "${EXTRA_CA_CERTS:-}" ] && compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    EXTRA_CA_CERTS=$(cat /usr/local/share/ca-certificates/*.crt)
fi
export EXTRA_CA_CERTS=${EXTRA_CA_CERTS:-}
export SOURCE_COMMIT=$(git describe --always --dirty 2>/dev/null || echo unknown)
timeout "$BUILD_TIMEOUT_S" "${compose[@]}" build controller >"$LOG_DIR/build.log" 2>&1 \
    || { tail -n 30 "$LOG_DIR/build.log" >&2; fail "the image did not build; see $LOG_DIR/build.log"; }
size=$("$DOCKER" image inspect --format '{{.Size}}' "$MPA_IMAGE")
step "image built ($((size / 1000000)) MB)"

token=$("${compose[@]}" run --rm -T new-token NAME=docker-check ROLE=reader 2>>"$LOG_DIR/compose.log")
[[ $token =~ ^[A-Za-z0-9_-]{20,}$ ]] || fail "new-token printed no token: $token"
step "token made through the image"

"${compose[@]}" up -d controller >>"$LOG_DIR/compose.log" 2>&1 || fail "compose up failed; see $LOG_DIR/compose.log"
id=$("${compose[@]}" ps -q controller)
deadline=$((SECONDS + HEALTH_TIMEOUT_S))
while :; do
    health=$("$DOCKER" inspect --format '{{.State.Health.Status}}' "$id")
    [ "$health" = healthy ] && break
    [ "$health" = unhealthy ] && fail "the controller is unhealthy"
    [ "$("$DOCKER" inspect --format '{{.State.Running}}' "$id")" = true ] \
        || fail "the controller exited"
    [ $SECONDS -lt $deadline ] || fail "the controller is not healthy after ${HEALTH_TIMEOUT_S}s ($health)"
    sleep 1
done
step "controller healthy"

user=$("$DOCKER" exec "$id" id -un)
[ "$user" = mpa-sdn ] || fail "the controller runs as $user, not mpa-sdn"
rest=$("${compose[@]}" port controller 8080)
openflow=$("${compose[@]}" port controller 6653)
for published in "$rest" "$openflow"; do
    [[ $published == 127.0.0.1:* ]] || fail "a port is published on $published, not on 127.0.0.1"
done
base=http://$rest/mpa/v1
status() { curl -s --noproxy '*' -o "$work/body" -w '%{http_code}' "$@"; }
[ "$(status "$base/openapi.json")" = 200 ] || fail "GET openapi.json did not answer 200"
grep -q '"openapi"' "$work/body" || fail "openapi.json is not an OpenAPI document"
[ "$(status "$base/switches")" = 401 ] || fail "GET switches without a token did not answer 401"
[ "$(status -H "Authorization: Bearer $token" "$base/switches")" = 200 ] \
    || fail "GET switches with a token did not answer 200"
step "OpenAPI 200, no token 401, token 200"
echo "docker-check: passed in $((SECONDS - begun)) s (as $user, REST on $rest, OpenFlow on $openflow)"
