# One image for the controller and the lab: Debian 12 with the same set-up
# `make` performs on a bare machine, so a container runs what CI runs.
FROM debian:bookworm

ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends make python3 python3-venv python3-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/mpa-sdn
COPY . .
# Installs the Debian packages (Open vSwitch, Mininet, ...) and .venv/.
RUN bash scripts/install-system.sh --no-start && bash scripts/install-venv.sh

EXPOSE 6653 8080
CMD [".venv/bin/mpa-controller", "--config", "topologies/two_domains.yaml", "--rest-host", "0.0.0.0"]
