# Two entry points: `make up` (the local stack against the local AWS emulator) and `make test` (everything
# the tests need, then all of them). `make down` undoes `make up`. Run `make help` for the rest.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

UV_VERSION    ?= 0.13.8
EMULATOR_PORT ?= 5000
BACKEND_PORT  ?= 8443
LOCAL_DIR     := $(CURDIR)/.local
STATE_DIR     := $(CURDIR)/.state
APT_PACKAGES  := nginx-light openssl tcpdump tshark wrk iproute2 ca-certificates curl procps shellcheck
PULUMI        ?= $(shell command -v pulumi 2>/dev/null || echo $(HOME)/.pulumi/bin/pulumi)
PULUMI_INSTALLER ?= https://get.pulumi.com

# The local stack's state lives in the repo (ignored by git) and its secrets use a passphrase that only
# protects emulator data. Real stacks use a team backend and their own passphrase or KMS key (README).
LOCAL_ENV := env PULUMI_BACKEND_URL=file://$(STATE_DIR) PULUMI_CONFIG_PASSPHRASE=local-emulator-only \
             AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 \
             AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

.PHONY: help up down test lint python-deps system-deps pulumi-cli emulator bench

help:
	@echo "make up     pulumi up of the local stack against the local AWS emulator, then serve its certificate"
	@echo "make down   destroy the local stack and stop what make up started"
	@echo "make test   install what the tests need (apt packages included) and run them all"
	@echo "make lint   ruff, ruff format --check, mypy"
	@echo "make bench  print the benchmark tables"

# uv from PATH, else a private copy in .local/uv (works where pip may not touch the system Python).
UV := $(shell command -v uv 2>/dev/null || echo $(LOCAL_DIR)/uv/bin/uv)

python-deps:
	@if [ ! -x "$(UV)" ]; then \
	  python3 -m venv $(LOCAL_DIR)/uv && $(LOCAL_DIR)/uv/bin/pip install --quiet "uv==$(UV_VERSION)"; \
	  echo "installed uv $(UV_VERSION) privately in $(LOCAL_DIR)/uv/bin (uv was not on PATH)"; \
	fi
	$(UV) sync --locked --quiet
	@# The README's commands run the project's environment directly, so they work without uv on PATH.
	@echo "Python environment ready: $(CURDIR)/.venv (run a script with .venv/bin/python scripts/NAME)"

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# Scripts have no .py suffix: name them explicitly. One mypy run checks everything: --scripts-are-modules
# names each script after its file (not __main__) and --explicit-package-bases names the examples' __main__.py
# by their path, so no two modules share a name.
SCRIPTS := $(wildcard scripts/*)
HOST_SCRIPTS := scripts/trust-ca scripts/verify-tls

lint: python-deps
	$(UV) run ruff check . $(SCRIPTS)
	$(UV) run ruff format --check . $(SCRIPTS)
	$(UV) run mypy --scripts-are-modules --explicit-package-bases . $(SCRIPTS) $(wildcard examples/*/__main__.py)
	@# Host-side scripts run on Amazon Linux 2023's python3 (3.9): type-check them against 3.9's standard library.
	$(UV) run mypy --python-version 3.9 --scripts-are-modules $(HOST_SCRIPTS)

test: system-deps python-deps lint
	$(UV) run pytest

bench: system-deps python-deps
	$(UV) run python bench/certificate_bench.py
	$(UV) run python bench/nginx_bench.py
	$(UV) run python bench/issuer_bench.py

# --- make up / make down -------------------------------------------------------------------------------
pulumi-cli:
	@if [ ! -x "$(PULUMI)" ]; then \
	  echo "The Pulumi CLI is not installed; trying its official installer ($(PULUMI_INSTALLER))..."; \
	  if ! (curl -fsSL --max-time 60 $(PULUMI_INSTALLER) | sh) >/dev/null 2>&1 || [ ! -x "$(PULUMI)" ]; then \
	    echo "error: could not install the Pulumi CLI." >&2; \
	    echo "Install it with:  curl -fsSL https://get.pulumi.com | sh   (see pulumi.com/docs/install)" >&2; \
	    echo "then run 'make up' again." >&2; \
	    exit 1; \
	  fi; \
	fi

emulator: python-deps
	@mkdir -p $(LOCAL_DIR)
	@if ! curl -s -o /dev/null http://127.0.0.1:$(EMULATOR_PORT)/moto-api/; then \
	  nohup $(UV) run python -m moto.server -H 127.0.0.1 -p $(EMULATOR_PORT) >$(LOCAL_DIR)/emulator.log 2>&1 & \
	  echo $$! >$(LOCAL_DIR)/emulator.pid; \
	  for i in $$(seq 50); do curl -s -o /dev/null http://127.0.0.1:$(EMULATOR_PORT)/moto-api/ && break; sleep 0.2; done; \
	  echo "AWS emulator on http://127.0.0.1:$(EMULATOR_PORT) (pid $$(cat $(LOCAL_DIR)/emulator.pid))"; \
	fi

up: python-deps pulumi-cli emulator
	@mkdir -p $(STATE_DIR)
	$(LOCAL_ENV) $(PULUMI) login --non-interactive file://$(STATE_DIR)
	$(LOCAL_ENV) $(PULUMI) stack select --create --non-interactive local
	$(LOCAL_ENV) $(PULUMI) up --yes --non-interactive --stack local
	$(LOCAL_ENV) $(PULUMI) stack output --stack local
	@# Serve what the stack stored in the emulator's SSM, fetched as a host fetches it at boot.
	@prefix=$$($(LOCAL_ENV) $(PULUMI) stack output --stack local parameterNames --json \
	  | $(UV) run python -c 'import json, posixpath, sys; print(posixpath.dirname(json.load(sys.stdin)["full_chain"]))'); \
	rm -f $(LOCAL_DIR)/backend.json; \
	nohup $(LOCAL_ENV) $(UV) run scripts/local-backend --from-ssm "$$prefix" \
	  --endpoint-url http://127.0.0.1:$(EMULATOR_PORT) --port $(BACKEND_PORT) --workdir $(LOCAL_DIR)/backend \
	  >$(LOCAL_DIR)/backend.json 2>$(LOCAL_DIR)/backend.log & echo $$! >$(LOCAL_DIR)/backend.pid; \
	for i in $$(seq 100); do [ -s $(LOCAL_DIR)/backend.json ] && break; sleep 0.2; done; \
	if [ ! -s $(LOCAL_DIR)/backend.json ]; then cat $(LOCAL_DIR)/backend.log >&2; exit 1; fi; \
	echo "backend serving TLS (details below); try: curl --cacert <ca_bundle> -d '{\"data\": \"hello\"}' <url>"; \
	cat $(LOCAL_DIR)/backend.json

# Says what it did, step by step; fails (non-zero) when the stack exists and could not be destroyed.
down:
	@if [ -f $(LOCAL_DIR)/backend.pid ] && kill $$(cat $(LOCAL_DIR)/backend.pid) 2>/dev/null; then \
	  echo "stopped the local backend (pid $$(cat $(LOCAL_DIR)/backend.pid))"; \
	else \
	  echo "no local backend was running"; \
	fi; \
	rm -f $(LOCAL_DIR)/backend.pid; rm -rf $(LOCAL_DIR)/backend $(LOCAL_DIR)/backend.json
	@status=0; \
	if [ ! -d $(STATE_DIR) ]; then \
	  echo "no local stack state in $(STATE_DIR): nothing to destroy"; \
	elif [ ! -x "$(PULUMI)" ]; then \
	  echo "error: the Pulumi CLI ($(PULUMI)) is not installed: the local stack was NOT destroyed" >&2; status=1; \
	elif ! $(LOCAL_ENV) $(PULUMI) stack select --non-interactive local >/dev/null 2>&1; then \
	  echo "no local stack in $(STATE_DIR): nothing to destroy"; \
	elif $(LOCAL_ENV) $(PULUMI) destroy --yes --non-interactive --stack local; then \
	  echo "destroyed the local stack (its state stays in $(STATE_DIR))"; \
	else \
	  echo "error: pulumi destroy failed: the local stack was NOT destroyed" >&2; status=1; \
	fi; \
	if [ -f $(LOCAL_DIR)/emulator.pid ] && kill $$(cat $(LOCAL_DIR)/emulator.pid) 2>/dev/null; then \
	  echo "stopped the AWS emulator (pid $$(cat $(LOCAL_DIR)/emulator.pid))"; \
	else \
	  echo "no AWS emulator started by make up was running"; \
	fi; \
	rm -f $(LOCAL_DIR)/emulator.pid; \
	exit $$status
