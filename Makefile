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

.PHONY: all setup system venv demo tour test unit integration check-config clean distclean

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

check-config: venv
	$(VENV)/bin/mpa-controller --check-config $(TOPOLOGY)

clean:
	-$(VENV)/bin/mpa-lab cleanup 2>/dev/null
	rm -rf .pytest_cache results build *.egg-info

distclean: clean
	rm -rf $(VENV)
