# Quick start: `make demo` (the handover experiment: every mode compared with
# the reactive baseline, results in results/demo/, then the inter-domain one
# with a controller per domain, in results/demo-inter-domain/) and `make test` (every
# test, integration included).  Both install what is missing first and start
# Open vSwitch; `make unit` needs neither root nor the lab.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
TOPOLOGY ?= topologies/two_domains.yaml
SCENARIO ?= topologies/scenarios/demo.yaml
INTER_DOMAIN_SCENARIO ?= topologies/scenarios/inter_domain.yaml

.PHONY: all setup system venv demo tour test unit integration check-config clean distclean \
	new-token engines engines-stop docker-check docker-demo podman-demo

all: test

setup: system venv

system:
	@bash scripts/install-system.sh

venv:
	@bash scripts/install-system.sh --python
	@bash scripts/install-venv.sh

# The inter-domain experiment runs even if a handover of the first failed
# (status 1), not after Ctrl-C (130); the worse status is make's.
demo: setup
	@status=0; \
	$(VENV)/bin/mpa-lab run $(SCENARIO) --out results/demo || status=$$?; \
	if [ $$status -ge 2 ]; then exit $$status; fi; \
	$(VENV)/bin/mpa-lab run $(INTER_DOMAIN_SCENARIO) --out results/demo-inter-domain \
		|| status=$$?; \
	exit $$status

tour: setup
	$(VENV)/bin/mpa-lab tour --topology $(TOPOLOGY) --out results/tour

test: setup
	$(PY) -m pytest tests

unit: venv
	$(PY) -m pytest tests -m "not integration"

integration: setup
	$(PY) -m pytest tests -m integration

# A REST API token for docker-compose.yml's controller, printed once:
# make new-token NAME=WHO [ROLE=admin|operator|reader]. In the image
# (docker-compose run --rm new-token NAME=WHO) the file goes to the
# controller's user, MPA_TOKENS_OWNER, which alone may read it.
TOKENS ?= secrets/api-tokens.yaml
ROLE ?= admin
new-token: venv
	@if [ -z "$(NAME)" ]; then echo "usage: make new-token NAME=WHO [ROLE=admin|operator|reader]" >&2; exit 2; fi
	@mkdir -p $(dir $(TOKENS))
	@$(VENV)/bin/mpa-ctl new-token --file $(TOKENS) --role $(ROLE) --name $(NAME)
	@if [ -n "$$MPA_TOKENS_OWNER" ]; then chown "$$MPA_TOKENS_OWNER" $(TOKENS); fi

# Containers (README's "With Docker or Podman", docs/docker.md). engines:
# Debian's docker.io, docker-compose and podman, podman-compose in .engine/,
# the Docker daemon started (engines-stop stops it), debian:bookworm in both.
engines:
	@bash scripts/install-engine.sh
	@bash scripts/dockerd.sh start
	@bash scripts/base-image.sh docker
	@bash scripts/base-image.sh podman

engines-stop:
	@bash scripts/dockerd.sh stop

# CI's check on a real Docker engine: build, compose up, health, API, down.
docker-check:
	@bash scripts/docker-check.sh

# The full demo in a container, on each engine: results in results/.
docker-demo:
	@bash scripts/container-demo.sh docker

podman-demo:
	@bash scripts/container-demo.sh podman

check-config: venv
	$(VENV)/bin/mpa-controller --check-config $(TOPOLOGY)

clean:
	-$(VENV)/bin/mpa-lab cleanup 2>/dev/null
	rm -rf .pytest_cache results build *.egg-info

distclean: clean
	rm -rf $(VENV)
