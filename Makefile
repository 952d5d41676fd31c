# kubesweep — `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.DEFAULT_GOAL := help

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: install
install: $(STAMP) ## create .venv and install kubesweep with its test dependencies

.PHONY: demo
demo: $(STAMP) ## run the example sweep on this machine (no cluster needed)
	$(BIN)/kubesweep run examples/digits/sweep.yaml --workdir kubesweep-runs/digits

.PHONY: prepare
prepare: ## install Debian's prometheus for the metrics test (once; needs root or sudo)
	bash .ci/prepare

.PHONY: test
test: $(STAMP) prepare ## run every test (builds the Kubernetes control plane and helm on first use)
	$(BIN)/python -m pytest

.PHONY: unit
unit: $(STAMP) ## run the fast tests only (no control plane, no helm)
	KUBESWEEP_SKIP_CLUSTER=1 $(BIN)/python -m pytest -m "not cluster and not slow"

.PHONY: e2e
e2e: $(STAMP) ## run only the tests against the real control plane
	$(BIN)/python -m pytest -m cluster tests/cluster

.PHONY: lint
lint: $(STAMP) ## layer contracts (the engine imports no Kubernetes code) and pyflakes-level checks
	$(BIN)/lint-imports
	$(BIN)/ruff check --select F,E9 operator tests benchmarks

.PHONY: chart
chart: $(STAMP) ## lint and package the Helm chart (helm is built from source on first use)
	$$(bash hack/build-helm.sh) lint --strict charts/kubesweep
	$$(bash hack/build-helm.sh) package charts/kubesweep --destination dist/

.PHONY: image
image: ## build the operator image (needs a container engine)
	docker build -t kubesweep:$$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml) .

.PHONY: crds
crds: ## copy crds/ into the chart (a test checks they are equal)
	cp crds/*.yaml charts/kubesweep/crds/

.PHONY: bench
bench: $(STAMP) ## every benchmark table in benchmarks/README.md (~30 min: engine, savings, operator at scale)
	$(BIN)/python benchmarks/engine_bench.py
	$(BIN)/python benchmarks/savings.py
	$(BIN)/python benchmarks/operator_scale.py
	$(BIN)/python benchmarks/operator_scale.py --runs 200

.PHONY: cluster
cluster: $(STAMP) ## start a local control plane (built from source on first use); prints its KUBECONFIG
	$(BIN)/python -m kubesweep.devcluster up --workdir .devcluster
