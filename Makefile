# Two entry points: `make up` (the local stack against the local AWS emulator) and `make test` (everything
# the tests need, then all of them). `make down` undoes `make up`. Run `make help` for the rest.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

UV_VERSION    ?= 0.13.8
# The Pulumi CLI make up installs: the Python SDK's version in uv.lock, as the workflows pin it (tests/test_make.py).
PULUMI_VERSION ?= 3.272.0
EMULATOR_PORT ?= 5000
BACKEND_PORT  ?= 8443
LOCAL_DIR     := $(CURDIR)/.local
STATE_DIR     := $(CURDIR)/.state
APT_PACKAGES  := nginx-light openssl tcpdump tshark wrk iproute2 ca-certificates curl procps shellcheck
PULUMI        ?= $(shell command -v pulumi 2>/dev/null || echo $(HOME)/.pulumi/bin/pulumi)
PULUMI_INSTALLER ?= https://get.pulumi.com
APT_GET       ?= apt-get
# What make up runs besides Python, and the Debian packages that bring them: curl (the Pulumi installer, the
# emulator check) and nginx (the local backend). nginx lives in /usr/sbin, often not on a user's PATH.
UP_COMMANDS   := curl nginx
SBIN_DIRS     ?= /usr/sbin /sbin
VENV_PYTHON   := $(CURDIR)/.venv/bin/python
# The local stack's settings for this run: stacks/Pulumi.local.yaml with the emulator's port, next to a copy of
# Pulumi.yaml whose stack files live beside it, so the CLI never writes to the tracked stack file (README).
LOCAL_STACK_DIR  := $(LOCAL_DIR)/stack
LOCAL_STACK_FILE := $(LOCAL_STACK_DIR)/Pulumi.local.yaml

# The local stack's state lives in the repo (ignored by git) and its secrets use a passphrase that only
# protects emulator data. Real stacks use a team backend and their own passphrase or KMS key (README). With
# PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER the CLI takes the passphrase's salt from the stack's state when the
# rendered settings lack it (sdk/go/common/env/env.go and pkg/cmd/pulumi/stack/secrets.go in pulumi/pulumi).
LOCAL_ENV := env PULUMI_BACKEND_URL=file://$(STATE_DIR) PULUMI_CONFIG_PASSPHRASE=local-emulator-only \
             AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 \
             AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
             PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER=true

.PHONY: help up down test lint python-deps system-deps up-deps pulumi-cli emulator local-config bench

help:
	@echo "make up     pulumi up of the local stack against the local AWS emulator, then serve its certificate"
	@echo "            (other ports: make up EMULATOR_PORT=5001 BACKEND_PORT=8444)"
	@echo "make down   destroy the local stack and stop what make up started"
	@echo "make test   install what the tests need (apt-get: Debian-family, root or sudo) and run them all"
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

# Installs the Debian packages named in the shell variable `packages` with apt-get, as root or through sudo;
# stops with what to do on a machine without apt-get or without root and sudo. $(1): who needs them.
define APT_INSTALL
if ! command -v $(APT_GET) >/dev/null 2>&1; then \
  echo "error: $(1) needs these Debian packages:$$packages; this machine has no $(APT_GET)" \
    "(not Debian-family): install their equivalents with its package manager, then run make again." >&2; \
  exit 1; \
fi; \
sudo=""; \
if [ "$$(id -u)" != 0 ]; then \
  if ! command -v sudo >/dev/null 2>&1; then \
    echo "error: installing$$packages with $(APT_GET) needs root, or sudo (not installed)." >&2; exit 1; \
  fi; \
  sudo=sudo; \
fi; \
echo "installing with $(APT_GET):$$packages"; \
$$sudo $(APT_GET) update -qq >/dev/null; \
$$sudo env DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends $$packages >/dev/null
endef

system-deps:
	@packages=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || packages="$$packages $$p"; done; \
	if [ -n "$$packages" ]; then $(call APT_INSTALL,make test); fi

# What make up starts or calls, found (nginx in $(SBIN_DIRS) too) or installed before anything is deployed.
up-deps:
	@search="$$PATH"; for dir in $(SBIN_DIRS); do search="$$search:$$dir"; done; \
	missing=""; packages=""; \
	for c in $(UP_COMMANDS); do \
	  PATH="$$search" command -v $$c >/dev/null && continue; \
	  missing="$$missing $$c"; \
	  case $$c in nginx) packages="$$packages nginx-light";; curl) packages="$$packages curl ca-certificates";; esac; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make up needs$$missing, which this machine does not have"; \
	  $(call APT_INSTALL,make up); \
	  for c in $$missing; do \
	    PATH="$$search" command -v $$c >/dev/null || { echo "error: $$c is still missing after the install" >&2; exit 1; }; \
	  done; \
	fi

# Scripts have no .py suffix: name them explicitly. One mypy run checks everything: --scripts-are-modules
# names each script after its file (not __main__) and --explicit-package-bases names the examples' __main__.py
# by their path, so no two modules share a name.
SCRIPTS := $(wildcard scripts/*)
HOST_SCRIPTS := scripts/trust-ca scripts/tls-gate scripts/verify-tls scripts/cert-agent

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
	$(UV) run python bench/agent_bench.py

# --- make up / make down -------------------------------------------------------------------------------
# The official installer, pinned to PULUMI_VERSION, with the flags Pulumi's own SDK installs the CLI with
# (sdk/python/lib/pulumi/automation/_cmd.py in pulumi/pulumi). A failure shows the failing step's own output.
pulumi-cli: up-deps
	@if [ ! -x "$(PULUMI)" ]; then \
	  mkdir -p $(LOCAL_DIR); log=$(LOCAL_DIR)/pulumi-install.log; script=$(LOCAL_DIR)/pulumi-install.sh; step=""; \
	  echo "The Pulumi CLI is not installed; installing $(PULUMI_VERSION) with its official installer ($(PULUMI_INSTALLER))..."; \
	  if ! curl -fsSL --max-time 60 -o $$script "$(PULUMI_INSTALLER)" 2>$$log; then \
	    step="downloading the installer from $(PULUMI_INSTALLER) failed"; \
	  elif ! sh $$script --version $(PULUMI_VERSION) --no-edit-path >$$log 2>&1; then \
	    step="its installer failed"; \
	  elif [ ! -x "$(PULUMI)" ]; then \
	    step="its installer finished, but $(PULUMI) does not exist (give its path with PULUMI=...)"; \
	  fi; \
	  if [ -n "$$step" ]; then \
	    echo "error: could not install the Pulumi CLI: $$step:" >&2; \
	    tail -n 20 $$log | sed 's/^/  /' >&2; \
	    echo "Install it with:  curl -fsSL https://get.pulumi.com | sh -s -- --version $(PULUMI_VERSION)" \
	      "  (see pulumi.com/docs/install)" >&2; \
	    echo "then run 'make up' again." >&2; \
	    exit 1; \
	  fi; \
	fi

# moto answers GET /moto-api/config with a JSON object of its own settings ({"batch": ..., "lambda": ...}).
# Anything else on the port is refused: the stack and the backend would send it their AWS calls.
emulator: python-deps up-deps
	@case "$(EMULATOR_PORT)" in ''|*[!0-9]*|0*) bad=1;; *) bad=$$(( $(EMULATOR_PORT) > 65535 ));; esac; \
	if [ "$$bad" = 1 ]; then echo "error: EMULATOR_PORT=$(EMULATOR_PORT): a TCP port number from 1 to 65535" >&2; exit 1; fi
	@mkdir -p $(LOCAL_DIR)
	@url=http://127.0.0.1:$(EMULATOR_PORT); \
	is_moto() { case "$$(curl -s --max-time 2 "$$url/moto-api/config" 2>/dev/null || true)" in *'"batch"'*) return 0;; esac; return 1; }; \
	if is_moto; then echo "AWS emulator (moto) already answers on $$url: using it"; exit 0; fi; \
	status=0; code=$$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$$url/moto-api/config" 2>/dev/null) || status=$$?; \
	if [ "$$status" != 7 ]; then \
	  if [ "$$status" = 0 ]; then what="a server that answers HTTP $$code"; else what="something that is not an HTTP server (curl exit $$status)"; fi; \
	  echo "error: port $(EMULATOR_PORT) (127.0.0.1:$(EMULATOR_PORT)) is taken by $$what, not the AWS emulator (moto)." >&2; \
	  echo "Stop it, or run the emulator on another port: make up EMULATOR_PORT=5001" >&2; \
	  exit 1; \
	fi; \
	nohup $(LOCAL_ENV) $(VENV_PYTHON) -m moto.server -H 127.0.0.1 -p $(EMULATOR_PORT) >$(LOCAL_DIR)/emulator.log 2>&1 & \
	pid=$$!; echo $$pid >$(LOCAL_DIR)/emulator.pid; \
	for i in $$(seq 150); do is_moto && break; kill -0 $$pid 2>/dev/null || break; sleep 0.2; done; \
	if ! is_moto; then \
	  echo "error: the AWS emulator (moto) did not start on $$url; its log ($(LOCAL_DIR)/emulator.log):" >&2; \
	  tail -n 20 $(LOCAL_DIR)/emulator.log | sed 's/^/  /' >&2; \
	  kill $$pid 2>/dev/null || true; rm -f $(LOCAL_DIR)/emulator.pid; exit 1; \
	fi; \
	echo "AWS emulator on $$url (pid $$pid)"

# stacks/Pulumi.local.yaml with every http://127.0.0.1:5000 pointed at EMULATOR_PORT, rendered for each run;
# the passphrase's salt the CLI wrote into the previous copy is kept. `pulumi stack select --create` runs in
# LOCAL_STACK_DIR (its Pulumi.yaml is the project's, its stack files beside it), so creating the stack writes
# there too. The tracked stack file is never written.
local-config:
	@mkdir -p $(LOCAL_STACK_DIR)
	@grep -v '^stackConfigDir:' Pulumi.yaml >$(LOCAL_STACK_DIR)/Pulumi.yaml
	@salt=$$(grep '^encryptionsalt:' $(LOCAL_STACK_FILE) 2>/dev/null || true); \
	sed 's#//127\.0\.0\.1:5000\b#//127.0.0.1:$(EMULATOR_PORT)#g' stacks/Pulumi.local.yaml >$(LOCAL_STACK_FILE).new; \
	if [ -n "$$salt" ]; then echo "$$salt" >>$(LOCAL_STACK_FILE).new; fi; \
	if ! grep -q '//127\.0\.0\.1:$(EMULATOR_PORT)\b' $(LOCAL_STACK_FILE).new; then \
	  echo "error: stacks/Pulumi.local.yaml names no http://127.0.0.1:5000 endpoint to point at port $(EMULATOR_PORT)" >&2; \
	  exit 1; \
	fi; \
	mv $(LOCAL_STACK_FILE).new $(LOCAL_STACK_FILE)

up: up-deps python-deps pulumi-cli emulator local-config
	@mkdir -p $(STATE_DIR)
	$(LOCAL_ENV) $(PULUMI) login --non-interactive file://$(STATE_DIR)
	$(LOCAL_ENV) $(PULUMI) stack select --create --non-interactive local --cwd $(LOCAL_STACK_DIR)
	$(LOCAL_ENV) $(PULUMI) up --yes --non-interactive --stack local --config-file $(LOCAL_STACK_FILE)
	$(LOCAL_ENV) $(PULUMI) stack output --stack local
	@# Serve what the stack stored in the emulator's SSM, fetched as a host fetches it at boot.
	@prefix=$$($(LOCAL_ENV) $(PULUMI) stack output --stack local parameterNames --json \
	  | $(VENV_PYTHON) -c 'import json, posixpath, sys; print(posixpath.dirname(json.load(sys.stdin)["full_chain"]))'); \
	rm -f $(LOCAL_DIR)/backend.json; \
	nohup $(LOCAL_ENV) $(VENV_PYTHON) scripts/local-backend --from-ssm "$$prefix" \
	  --endpoint-url http://127.0.0.1:$(EMULATOR_PORT) --port $(BACKEND_PORT) --workdir $(LOCAL_DIR)/backend \
	  >$(LOCAL_DIR)/backend.json 2>$(LOCAL_DIR)/backend.log & echo $$! >$(LOCAL_DIR)/backend.pid; \
	for i in $$(seq 150); do [ -s $(LOCAL_DIR)/backend.json ] && break; sleep 0.2; done; \
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
	elif { [ -f $(LOCAL_STACK_FILE) ] || $(MAKE) -s --no-print-directory local-config; } && \
	  $(LOCAL_ENV) $(PULUMI) destroy --yes --non-interactive --stack local --config-file $(LOCAL_STACK_FILE); then \
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
