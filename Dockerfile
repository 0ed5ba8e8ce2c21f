# One image for the controller, the lab and the demo: Debian 12 with the same
# set-up `make setup` performs on a bare machine, so a container runs what CI
# runs (.ci/run -> make test).
FROM debian:bookworm

LABEL org.opencontainers.image.title="mpa-sdn" \
      org.opencontainers.image.description="MPA (RFC 6252) controller on Ryu/OpenFlow 1.3, with its Open vSwitch/Mininet lab" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1
# Only what the set-up scripts need to start; they install the rest.
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends make python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/mpa-sdn
COPY . .
# `make setup` without starting Open vSwitch: nothing runs at build time; the
# lab's `make tour`/`make demo` start it in the container.
RUN bash scripts/install-system.sh --no-start \
 && bash scripts/install-venv.sh \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/mpa-sdn

# OpenFlow, REST.
EXPOSE 6653 8080
CMD [".venv/bin/mpa-controller", "--config", "topologies/two_domains.yaml", "--rest-host", "0.0.0.0", "--api-tokens", "/run/secrets/api_tokens", "--state-db", "/var/lib/mpa-sdn/state.db"]
