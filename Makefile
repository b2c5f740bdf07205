# traffic-mirror-operator — developer entry points. `make help` lists them.
#
# The integration tests run against a real etcd + kube-apiserver built from pinned Go modules, one
# per end of the supported Kubernetes range (tests/control-plane: the newest, tests/control-plane-1.30:
# the oldest) and, for the SDK conformance tests, a Python venv with the official Huawei
# Cloud SDK (tests/sdk). Both are cached under ~/.cache/traffic-mirror-operator, so only the first
# run on a machine pays for them.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
# tests/control-plane/go.mod needs Go >= 1.26 (k8s.io 0.37). With an older local Go, the go command
# takes the approved newer toolchain from the module proxy. (build.sh applies the same rule when it
# is run directly.)
GO_MINOR := $(shell go env GOVERSION 2>/dev/null | sed -E 's/^go1\.([0-9]+).*/\1/')
ifeq ($(shell [[ "$(GO_MINOR)" =~ ^[0-9]+$$ ]] && (( $(GO_MINOR) < 26 )) && echo old),old)
export GOTOOLCHAIN ?= go1.27.3
endif
CONTROL_PLANE_BUILD := bash tests/control-plane/build.sh
CONTROL_PLANE_OLDEST_BUILD := bash tests/control-plane-1.30/build.sh
# tests/helm/go.mod (helm v3.22) needs Go >= 1.26 too: the GOTOOLCHAIN rule above covers it.
HELM_BUILD := bash tests/helm/build.sh
# promtool from the pinned github.com/prometheus/prometheus module (tests/promtool/go.mod), cached.
PROMTOOL_BUILD := bash tests/promtool/build.sh
SDK_VENV_SETUP_SCRIPT := tests/sdk/setup-venv.sh
SDK_VENV_SETUP := bash $(SDK_VENV_SETUP_SCRIPT)
CACHE_ROOT := $(or $(TMO_CACHE_DIR),$(HOME)/.cache/traffic-mirror-operator)

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-22s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build every binary (debug).
	$(CARGO) build --all-targets

.PHONY: fmt
fmt: ## Format the code.
	$(CARGO) fmt --all

.PHONY: fmt-check
fmt-check: ## Fail if the code is not formatted.
	$(CARGO) fmt --all -- --check

.PHONY: clippy
clippy: ## Lint every target, warnings are errors.
	$(CARGO) clippy --all-targets -- -D warnings

.PHONY: lint
lint: fmt-check clippy crds-check ## fmt-check + clippy + crds-check.

.PHONY: crds
crds: ## Regenerate crds/*.yaml from the Rust types (and the Helm chart's copy).
	$(CARGO) run -q --bin crdgen
	bash deploy/helm/sync-crds.sh

.PHONY: crds-check
crds-check: ## Fail if crds/*.yaml (or the Helm chart's copy) are not what the Rust types generate.
	$(CARGO) run -q --bin crdgen -- --check
	bash deploy/helm/sync-crds.sh --check

# The last line printed is the directory holding etcd, kube-apiserver and kubectl (nothing after it).
.PHONY: control-plane
control-plane: ## Build (or reuse) etcd, kube-apiserver and kubectl (newest Kubernetes); prints their directory last.
	@$(CONTROL_PLANE_BUILD)

.PHONY: control-plane-oldest
control-plane-oldest: ## The same for the oldest supported Kubernetes (1.30); prints the directory last.
	@$(CONTROL_PLANE_OLDEST_BUILD)

.PHONY: sdk-venv
sdk-venv: ## Create (or reuse) the Python venv with the Huawei Cloud SDK; prints its path last.
	@$(SDK_VENV_SETUP)

# Runs the test binaries with TMO_CONTROL_PLANE_DIR and TMO_CONTROL_PLANE_DIR_OLDEST (and
# TMO_SDK_VENV when tests/sdk/setup-venv.sh exists) exported, so no test has to build anything.
# Extra arguments: make test-only ARGS='--test x'.
.PHONY: test-only
test-only: ## Only `cargo test --all-targets` (with both control planes and the SDK venv ready).
	@cp_dir="$$($(CONTROL_PLANE_BUILD) | tail -n 1)"; \
	export TMO_CONTROL_PLANE_DIR="$$cp_dir"; \
	echo "TMO_CONTROL_PLANE_DIR=$$TMO_CONTROL_PLANE_DIR"; \
	cp_oldest_dir="$$($(CONTROL_PLANE_OLDEST_BUILD) | tail -n 1)"; \
	export TMO_CONTROL_PLANE_DIR_OLDEST="$$cp_oldest_dir"; \
	echo "TMO_CONTROL_PLANE_DIR_OLDEST=$$TMO_CONTROL_PLANE_DIR_OLDEST"; \
	export TMO_HELM="$$($(HELM_BUILD) | tail -n 1)/helm"; \
	echo "TMO_HELM=$$TMO_HELM"; \
	if [[ -f $(SDK_VENV_SETUP_SCRIPT) ]]; then \
	  export TMO_SDK_VENV="$$($(SDK_VENV_SETUP) | tail -n 1)"; \
	  echo "TMO_SDK_VENV=$$TMO_SDK_VENV"; \
	fi; \
	set -x; $(CARGO) test --all-targets $(ARGS)

# The Argo CD health checks (deploy/argocd/) run in gopher-lua, the Lua interpreter Argo CD embeds,
# over status fixtures (tests/argocd-health, a Go module pinned by go.mod + go.sum).
.PHONY: argocd-health-test
argocd-health-test: ## Test deploy/argocd/health.lua (and copies) over tests/argocd-health/fixtures (GO_TEST_ARGS=-v).
	bash tests/argocd-health/run.sh $(GO_TEST_ARGS)

.PHONY: argocd-health-sync
argocd-health-sync: ## Copy deploy/argocd/health.lua into the per-kind files and argocd-cm-patch.yaml.
	bash deploy/argocd/sync.sh

# The Helm chart with a real helm (tests/helm: helm v3 from its pinned Go module, built once into the
# cache like the control plane) and both control planes (newest and 1.30): helm lint, helm template
# with the default values and tests/helm/values-custom.yaml (assertions on the output), and a
# server-side dry run of every rendering and of the kustomize render on each version
# (tests/helm_chart.rs; test-only runs it again with the other tests). It comes before test-only in
# `make test`, so it builds (or reuses) the 1.30 control plane itself.
.PHONY: helm-test
helm-test: ## helm lint + helm template (asserted) + server-side dry run of the chart and kustomize on 1.30 and newest.
	@export TMO_HELM="$$($(HELM_BUILD) | tail -n 1)/helm"; \
	echo "TMO_HELM=$$TMO_HELM"; \
	export TMO_CONTROL_PLANE_DIR="$$($(CONTROL_PLANE_BUILD) | tail -n 1)"; \
	echo "TMO_CONTROL_PLANE_DIR=$$TMO_CONTROL_PLANE_DIR"; \
	export TMO_CONTROL_PLANE_DIR_OLDEST="$$($(CONTROL_PLANE_OLDEST_BUILD) | tail -n 1)"; \
	echo "TMO_CONTROL_PLANE_DIR_OLDEST=$$TMO_CONTROL_PLANE_DIR_OLDEST"; \
	set -x; $(CARGO) test --test helm_chart $(ARGS)

# The container image without a Docker daemon: a static (musl) release binary on an empty base, built
# with buildah (copy/config/commit, no RUN), written to target/image/traffic-mirror-operator.oci.tar.
# deploy/Dockerfile builds the same layout for people with Docker. Installs buildah and musl-tools
# (apt-get) and the musl Rust target (rustup) when missing.
.PHONY: image
image: ## Build the OCI image with buildah (no Docker daemon); writes target/image/traffic-mirror-operator.oci.tar.
	bash deploy/image/build.sh

.PHONY: image-test
image-test: ## Build the image and check it: config, labels, no shell, static binary runs, Dockerfile matches.
	bash tests/image/run.sh

# The alerts and the dashboard (docs/observability.md): `promtool check rules` with promtool built
# (once, cached like helm) from its pinned Go module, `promtool test rules` (each alert fires on the
# series it should, after its `for`, and not on a healthy operator), and every expression parsed
# with Prometheus' PromQL parser. The check against a live /metrics runs in tests/observability.rs (test-only).
.PHONY: promtool-test
promtool-test: ## promtool check rules + test rules (tests/promtool/alerts_test.yaml) + PromQL parse of the dashboard and alerts.
	@promtool_dir="$$($(PROMTOOL_BUILD) | tail -n 1)"; \
	set -x; "$$promtool_dir/promtool" check rules deploy/prometheus/alerts.yaml; \
	"$$promtool_dir/promtool" test rules tests/promtool/alerts_test.yaml; \
	bash tests/promtool/run.sh $(GO_TEST_ARGS)

.PHONY: dashboard-picture
dashboard-picture: ## Redraw docs/dashboard.svg from a test run (tests/observability.rs, needs the control plane).
	@export TMO_CONTROL_PLANE_DIR="$$($(CONTROL_PLANE_BUILD) | tail -n 1)"; \
	export TMO_WRITE_DASHBOARD_SVG=1; \
	set -x; $(CARGO) test --test observability -- metric_labels_and_values_match_the_docs

.PHONY: test
test: fmt-check clippy crds-check argocd-health-test promtool-test helm-test image-test test-only resilience-workload-identity ## Everything CI checks: fmt, clippy, crds in sync, Argo CD health checks, alerts and dashboard, Helm chart, the image, all tests.

# The resilience suite (tests/resilience.rs; its short form also runs in `make test`): a churn of
# sessions and filters under injected cloud faults, operator SIGKILLs and one restart each of the
# kube-apiserver and the emulator, then the end-state checks. RESILIENCE_MINUTES (default 1.5),
# RESILIENCE_SEED (default random) and RESILIENCE_CREDENTIALS (secret, the default, or
# workload-identity: a WorkloadIdentity ProviderConfig and credentials expiring every 6 s) reach
# the test through the environment:
#   make resilience RESILIENCE_MINUTES=30 RESILIENCE_SEED=42
#   make resilience RESILIENCE_CREDENTIALS=workload-identity
.PHONY: resilience
resilience: ## Churn under faults, kills and restarts, then check the end state (RESILIENCE_MINUTES=30, RESILIENCE_SEED=N).
	@cp_dir="$$($(CONTROL_PLANE_BUILD) | tail -n 1)"; \
	export TMO_CONTROL_PLANE_DIR="$$cp_dir"; \
	echo "TMO_CONTROL_PLANE_DIR=$$TMO_CONTROL_PLANE_DIR"; \
	set -x; $(CARGO) test --test resilience $(ARGS) -- --nocapture

# The short run with workload identity that `make test` adds (under 2 minutes).
.PHONY: resilience-workload-identity
resilience-workload-identity: ## Short resilience run with WorkloadIdentity and 6 s credentials (part of `make test`).
	@$(MAKE) --no-print-directory resilience RESILIENCE_CREDENTIALS=workload-identity RESILIENCE_MINUTES=0.75

.PHONY: bench
bench: ## Run the benchmarks (planner, session convergence, filters, session sets); figures go to benches/results/.
	@export TMO_CONTROL_PLANE_DIR="$$($(CONTROL_PLANE_BUILD) | tail -n 1)"; \
	set -x; $(CARGO) bench $(ARGS)

.PHONY: clean-cache
clean-cache: ## Delete cached control-plane, helm and promtool builds (the current ones are kept) and old SDK venvs.
	@# Never the current ones (a running test or dev cluster may use them); builds nothing. The venv
	@# key mirrors tests/sdk/setup-venv.sh (sha256 of requirements.txt, 16 hex digits).
	@keep_cp="$$($(CONTROL_PLANE_BUILD) --dir)"; \
	keep_cp_oldest="$$($(CONTROL_PLANE_OLDEST_BUILD) --dir)"; \
	for d in "$(CACHE_ROOT)"/control-plane/*/; do \
	  d="$${d%/}"; [[ -d "$$d" && "$$d" != "$$keep_cp" && "$$d" != "$$keep_cp_oldest" ]] || continue; \
	  echo "removing $$d"; rm -rf -- "$$d"; \
	done; \
	keep_helm="$$($(HELM_BUILD) --dir)"; \
	for d in "$(CACHE_ROOT)"/helm/*/; do \
	  d="$${d%/}"; [[ -d "$$d" && "$$d" != "$$keep_helm" ]] || continue; echo "removing $$d"; rm -rf -- "$$d"; \
	done; \
	keep_promtool="$$($(PROMTOOL_BUILD) --dir)"; \
	for d in "$(CACHE_ROOT)"/promtool/*/; do \
	  d="$${d%/}"; [[ -d "$$d" && "$$d" != "$$keep_promtool" ]] || continue; echo "removing $$d"; rm -rf -- "$$d"; \
	done; \
	if [[ -f tests/sdk/requirements.txt ]]; then \
	  keep_venv="$(CACHE_ROOT)/sdk-venv-$$(sha256sum tests/sdk/requirements.txt | cut -c1-16)"; \
	  for d in "$(CACHE_ROOT)"/sdk-venv-*/; do \
	    d="$${d%/}"; [[ -d "$$d" && "$$d" != "$$keep_venv" ]] || continue; echo "removing $$d"; rm -rf -- "$$d"; \
	  done; \
	fi

# --- dev environment (lead) ---

.PHONY: dev-up
dev-up: ## Start control plane + emulator + CRDs + ProviderConfig `default` in the background; writes .dev/env.
	@bash hack/dev-up.sh

.PHONY: dev-down
dev-down: ## Stop everything dev-up / demo started and remove .dev/.
	@bash hack/dev-down.sh

.PHONY: run
run: ## Run the operator in the foreground against $KUBECONFIG (after `. .dev/env` for the local one).
	$(CARGO) run --bin traffic-mirror-operator -- run --metrics-addr $(or $(METRICS_ADDR),127.0.0.1:8080)

.PHONY: demo
demo: ## The newcomer's command: dev-up, operator, apply deploy/examples/, one edit and the PUT it caused.
	@bash hack/demo.sh
