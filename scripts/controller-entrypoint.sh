#!/bin/sh
# docker-compose.yml's controller: a fresh RADIUS shared secret in every
# secret_file that the topology of the command's --config names and that does
# not exist yet (the controller exits 2 without them), then the command.
# Mount the real secrets over /run/mpa-lab/aaa to use real RADIUS servers
# (docs/docker.md).
set -e
topology=
previous=
for arg in "$@"; do
    [ "$previous" = --config ] && topology=$arg
    previous=$arg
done
if [ -n "$topology" ]; then
    .venv/bin/python -m mpa_lab.aaa.secret_files "$topology"
fi
exec "$@"
