# One image for the controller, the lab and the demo: Debian 12 with the same
# set-up `make setup` performs on a bare machine, so a container runs what CI
# runs. Stages, each a layer of the next, so that a change to the sources
# rebuilds only the last, small one:
#   system        Debian's packages (scripts/install-system.sh)
#   dependencies  .venv with Ryu and setup.cfg's runtime requirements
#   runtime       the default: the sources, without the test extras
#
# Build arguments:
#   EXTRA_CA_CERTS  PEM certificates to trust while building, for a network
#                   whose TLS goes through an intercepting proxy (pip fails with
#                   CERTIFICATE_VERIFY_FAILED otherwise); stays trusted in the
#                   image. A CA certificate is public: a build argument is fine.
#   SOURCE_COMMIT   the commit built (results.json says so; the image has no .git)
FROM debian:bookworm AS system

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=/etc/ssl/certs/ca-certificates.crt
ARG EXTRA_CA_CERTS=
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends make python3 ca-certificates \
 && if [ -n "$EXTRA_CA_CERTS" ]; then \
        printf '%s\n' "$EXTRA_CA_CERTS" >/usr/local/share/ca-certificates/build-extra.crt \
        && update-ca-certificates; \
    fi \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/mpa-sdn
COPY scripts/install-system.sh scripts/
# `make setup` without starting Open vSwitch (nothing runs at build time; the
# lab's `make tour`/`make demo` start it in the container) and without the
# tools only the tests use (tshark, eapol_test); FreeRADIUS is in: the lab
# runs each domain's AAA server.
RUN bash scripts/install-system.sh --image \
 && apt-get clean && rm -rf /var/lib/apt/lists/*

FROM system AS dependencies
COPY setup.cfg pyproject.toml ./
COPY scripts/install-venv.sh scripts/
RUN bash scripts/install-venv.sh --runtime --deps-only

FROM dependencies AS runtime
# The controller runs as mpa-sdn; the lab and the demo need root (Mininet's
# namespaces, Open vSwitch) and say so in docker-compose.yml. /run/mpa-lab
# holds the RADIUS shared secrets the topologies name: the controller's user
# makes its own there at start (docker-compose.yml), the lab its servers'.
ENV MPA_VENV=runtime
COPY . .
RUN bash scripts/install-venv.sh \
 && groupadd --gid 10001 mpa-sdn \
 && useradd --uid 10001 --gid mpa-sdn --no-create-home --home-dir /var/lib/mpa-sdn \
        --shell /usr/sbin/nologin mpa-sdn \
 && install -d -o mpa-sdn -g mpa-sdn -m 700 /var/lib/mpa-sdn /run/mpa-lab
# Last, so that a new commit rebuilds nothing above.
ARG SOURCE_COMMIT=unknown
ENV MPA_SOURCE_COMMIT=$SOURCE_COMMIT MPA_TOKENS_OWNER=mpa-sdn:mpa-sdn
USER mpa-sdn
# OpenFlow, REST.
EXPOSE 6653 8080
# The OpenAPI document is served without a token, so the check needs none.
HEALTHCHECK --interval=10s --timeout=5s --retries=3 --start-period=20s \
    CMD ["/opt/mpa-sdn/.venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/mpa/v1/openapi.json', timeout=3)"]
CMD [".venv/bin/mpa-controller", "--config", "topologies/two_domains.yaml", "--rest-host", "0.0.0.0", "--api-tokens", "/run/secrets/api_tokens", "--state-db", "/var/lib/mpa-sdn/state.db"]
