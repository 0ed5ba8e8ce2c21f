#!/usr/bin/env bash
# Starts or stops the Docker daemon for the project's image, on a machine
# where no service manager runs it (Debian's docker.io, started by hand).
#
#   dockerd.sh start   start dockerd unless a daemon already answers; its PID
#                      goes to $PIDFILE, which marks it as ours
#   dockerd.sh stop    stop the dockerd we started (none other), and wait
#   dockerd.sh status  exit 0 when a daemon answers
#
# The daemon never touches the host's firewall or forwarding: no iptables
# rules, no ip_forward. Containers therefore have no NAT to the outside;
# builds use the host's network (`build --network host`), and published
# ports go through docker-proxy, which needs neither. No default bridge
# (docker0) either, which would outlive the daemon on the host: compose
# makes a network per project, and takes it down with the project.
set -euo pipefail
exec </dev/null

PIDFILE=${MPA_DOCKERD_PIDFILE:-/run/mpa-sdn-dockerd.pid}
LOG=${MPA_DOCKERD_LOG:-/var/log/mpa-sdn-dockerd.log}
START_TIMEOUT_S=${MPA_DOCKERD_START_TIMEOUT_S:-60}
STOP_TIMEOUT_S=${MPA_DOCKERD_STOP_TIMEOUT_S:-30}
# Debian's client, the daemon's own version, whatever else is first on PATH.
DOCKER=${DOCKER:-/usr/bin/docker}

answers() { "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

ours() {
    [ -f "$PIDFILE" ] || return 1
    local pid; pid=$(cat "$PIDFILE")
    [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = dockerd ]
}

case "${1:-}" in
start)
    if answers; then
        ours && echo "dockerd: running (ours, PID $(cat "$PIDFILE"))" \
             || echo "dockerd: a daemon already answers; using it"
        exit 0
    fi
    [ "$(id -u)" -eq 0 ] || { echo "dockerd: starting the daemon needs root" >&2; exit 1; }
    command -v dockerd >/dev/null || { echo "dockerd: not installed (make docker-engine)" >&2; exit 1; }
    echo "dockerd: starting (log $LOG)"
    # setsid: the daemon outlives this script and takes no signal meant for
    # make's process group; no descriptor beyond stdio leaks into it, so a
    # lock the caller holds is not held by the daemon for ever.
    (
        for fd in /proc/self/fd/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] && exec {fd}>&-
        done
        exec setsid dockerd --iptables=false --ip-forward=false --bridge=none >>"$LOG" 2>&1
    ) &
    echo $! >"$PIDFILE"
    deadline=$((SECONDS + START_TIMEOUT_S))
    until answers; do
        if ! ours; then
            rm -f "$PIDFILE"
            echo "dockerd: exited while starting; the end of $LOG:" >&2
            tail -n 20 "$LOG" >&2
            exit 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            echo "dockerd: no answer after ${START_TIMEOUT_S}s; see $LOG" >&2
            exit 1
        fi
        sleep 0.5
    done
    echo "dockerd: running (PID $(cat "$PIDFILE"))"
    ;;
stop)
    if ! ours; then
        rm -f "$PIDFILE"
        echo "dockerd: none of ours runs"
        exit 0
    fi
    pid=$(cat "$PIDFILE")
    kill -TERM "$pid"
    deadline=$((SECONDS + STOP_TIMEOUT_S))
    while [ -d /proc/"$pid" ] && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
    if [ -d /proc/"$pid" ]; then
        echo "dockerd: still running after ${STOP_TIMEOUT_S}s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    echo "dockerd: stopped"
    ;;
status)
    answers
    ;;
*)
    echo "usage: dockerd.sh start|stop|status" >&2
    exit 2
    ;;
esac
