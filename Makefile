# egpu-operator: the verbs a user and CI type. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export EGPU_CACHE ?= $(HOME)/.cache/egpu
DEMO_RUN_DIR := $(CURDIR)/.run/cluster
TEST_RUN_DIR := $(CURDIR)/.run/test-cluster
DEMO_SHAPE ?= --blocks 2 --leaves 4 --nodes 16 --gpus 8
SOAK ?= short

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP) ## Create the virtualenv with the project and its dev tools

binaries: ## Build or fetch the control-plane binaries into $(EGPU_CACHE) (cached)
	bash hack/build-binaries.sh

cluster-up: venv binaries ## Start the local control plane (etcd, apiserver, KCM, scheduler, kwok)
	EGPU_RUN_DIR=$(DEMO_RUN_DIR) $(PY) hack/localcluster.py up

cluster-down: ## Stop the local control plane; no process is left behind
	EGPU_RUN_DIR=$(DEMO_RUN_DIR) $(PY) hack/localcluster.py down

cluster-status: ## Show the local control plane's processes and health
	@EGPU_RUN_DIR=$(DEMO_RUN_DIR) $(PY) hack/localcluster.py status

sim-nodes: venv ## Add simulated GPU nodes to the running cluster (DEMO_SHAPE=...)
	KUBECONFIG=$(DEMO_RUN_DIR)/kubeconfig $(VENV)/bin/egpu sim nodes $(DEMO_SHAPE)

demo: cluster-up ## The main job: cluster + 128 simulated GPU nodes + operator + samples
	EGPU_RUN_DIR=$(DEMO_RUN_DIR) bash hack/demo.sh

demo-down: ## Stop the demo operator and the cluster
	-EGPU_RUN_DIR=$(DEMO_RUN_DIR) bash hack/demo.sh stop
	EGPU_RUN_DIR=$(DEMO_RUN_DIR) $(PY) hack/localcluster.py down

image: venv ## The operator image, registry-free (cached in $(EGPU_CACHE)/images), loaded into running real nodes
	bash hack/install-node-deps.sh
	$(PY) hack/images.py build operator
	@for d in $(TEST_RUN_DIR) $(DEMO_RUN_DIR); do \
	  EGPU_RUN_DIR=$$d $(PY) hack/localcluster.py load-images --if-running operator; done

crds: venv ## Regenerate crds/ and docs/api.md from the pydantic models
	$(PY) -m egpu.api.crdgen --out crds/
	rm -f charts/egpu-operator/crds/*.yaml && cp crds/*.yaml charts/egpu-operator/crds/
	$(PY) -m egpu.api.docgen > docs/api.md

crds-check: venv ## Fail when crds/ or docs/api.md drift from the models
	$(PY) -m egpu.api.crdgen --check crds/
	diff -r crds charts/egpu-operator/crds > /dev/null || \
	  { echo "charts/egpu-operator/crds differs from crds/: run make crds"; exit 1; }
	$(PY) -m egpu.api.docgen | diff -u docs/api.md - > /dev/null || \
	  { echo "docs/api.md is stale: run make crds"; exit 1; }

lint: venv ## ruff, mypy (strict on engines/domain/api), import layers, CRD drift
	$(VENV)/bin/ruff check operator tests hack
	$(VENV)/bin/ruff format --check operator tests hack
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(MAKE) --no-print-directory crds-check

unit: venv ## Unit tests (pure logic, no cluster)
	$(PY) -m pytest -m unit -q --timeout 120  # a hang is a failure with a traceback, not a stalled CI

integration: venv binaries ## Integration tests against a real, throw-away local control plane
	EGPU_RUN_DIR=$(TEST_RUN_DIR) bash hack/run-integration.sh

test: ## What CI runs: lint, unit tests, integration tests (cluster up and down)
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory integration

bench-placement: venv ## Placement engine benchmark (15,000 nodes, 120,000 GPUs)
	$(PY) hack/bench/placement.py $(BENCH_ARGS)

bench-bind: venv binaries ## Bind 10,000 pods on 1,000 nodes: egpu, a do-nothing ceiling, kube-scheduler x2; gangs
	EGPU_RUN_DIR=$(CURDIR)/.run/bench-bind $(PY) hack/bench/bind.py $(BENCH_ARGS)

bench-scale: venv binaries ## 5,000 nodes, 50,000 pods: operator memory, bind throughput, restart time
	EGPU_RUN_DIR=$(CURDIR)/.run/bench-scale $(PY) hack/bench/scale.py $(BENCH_ARGS)

bench-resize: venv binaries ## In-place resize: 1,000 pods, usage steps; p50/p99 from usage change to resize applied (MODE=real: real pods on a real kubelet, to the cgroup)
ifeq ($(MODE),real)
	$(PY) hack/bench/resize_real.py
else
	EGPU_RUN_DIR=$(CURDIR)/.run/bench-resize $(PY) hack/bench/resize.py
endif

bench-autoscale: venv binaries ## Autoscaling: egpu vs stock and tuned HPA + prometheus-adapter on surprise traces (crowds, spike, plateau, sawtooth, two-day tide)
	EGPU_RUN_DIR=$(CURDIR)/.run/bench-autoscale $(PY) hack/bench/autoscale.py $(BENCH_ARGS)

bench-repair: venv binaries ## Self-healing: 1,000 nodes, 200 gangs, a compressed fault trace; detection, recovery, ETT
	EGPU_RUN_DIR=$(CURDIR)/.run/bench-repair $(PY) hack/bench/repair.py $(BENCH_ARGS)

bench-predict: venv ## Risk score vs a published-model fault trace: precision, recall, lead time, false alarms
	$(PY) hack/bench/predict.py $(BENCH_ARGS)

soak: venv binaries ## Chaos soak: API faults, churn, SIGKILLed leaders, invariants (SOAK=long: ~25 min)
	EGPU_RUN_DIR=$(CURDIR)/.run/soak $(PY) hack/soak/soak.py --profile $(SOAK) $(SOAK_ARGS)

bench-nodes: venv binaries ## Time creating 1,000 simulated GPU nodes; control-plane memory
	EGPU_RUN_DIR=$(CURDIR)/.run/bench-cluster bash hack/bench/nodes.sh

kind-up: ## kind cluster with fake GPU capacity (needs Docker; not on the CI machine)
	bash hack/kind-up.sh

kind-down: ## Delete the kind cluster
	kind delete cluster --name egpu

clean: ## Remove the virtualenv and run state (not the binary cache)
	-EGPU_RUN_DIR=$(DEMO_RUN_DIR) $(PY) hack/localcluster.py down
	-EGPU_RUN_DIR=$(TEST_RUN_DIR) $(PY) hack/localcluster.py down
	-EGPU_RUN_DIR=$(CURDIR)/.run/soak $(PY) hack/localcluster.py down
	-EGPU_RUN_DIR=$(CURDIR)/.run/bench-bind $(PY) hack/localcluster.py down
	-EGPU_RUN_DIR=$(CURDIR)/.run/bench-scale $(PY) hack/localcluster.py down
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache

.PHONY: image help venv binaries cluster-up cluster-down cluster-status sim-nodes demo demo-down crds \
	crds-check lint unit integration test bench-placement bench-bind bench-resize bench-autoscale \
	bench-repair bench-predict bench-scale bench-nodes soak kind-up kind-down clean
