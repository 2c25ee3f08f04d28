# nodeupgrade: build, generate, test. `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

ETCD_VERSION             ?= v3.6.16
KUBE_VERSION             ?= v1.37.2
KWOK_VERSION             ?= v0.8.0
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION    ?= v2.15.0
HELM_VERSION             ?= v3.21.4
KREW_VERSION             ?= v0.4.3
# Debian's prometheus package (bookworm), for promtool and a real Prometheus
# in the tests: hack/prometheus.sh extracts it into bin/.
PROMETHEUS_VERSION       ?= 2.42.0

BIN            := $(CURDIR)/bin
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)/controller-gen
GOLANGCI_LINT  := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint
KWOK           := $(BIN)/kwok-$(KWOK_VERSION)/kwok
HELM           := $(BIN)/helm-$(HELM_VERSION)/helm
KREW           := $(BIN)/krew-$(KREW_VERSION)/krew
PROMETHEUS_DIR := $(BIN)/prometheus-$(PROMETHEUS_VERSION)
ENVTEST_ASSETS := $(BIN)/k8s-$(KUBE_VERSION)-etcd-$(ETCD_VERSION)
export KUBEBUILDER_ASSETS := $(ENVTEST_ASSETS)
export NODEUPGRADE_KWOK   := $(KWOK)
export NODEUPGRADE_HELM   := $(HELM)
export NODEUPGRADE_KREW   := $(KREW)
export NODEUPGRADE_PROMETHEUS := $(PROMETHEUS_DIR)

# Go test packages that need no control plane, and those that do.
UNIT_PKGS  := ./api/... ./pkg/... ./cmd/...
# Two test packages at a time, even on 2 cores: a world package spends most
# of its time waiting on simulated upgrades and timeouts, not on CPU
# (docs/testing.md has the measurements). TEST_FLAGS='-count=1 -p 1
# -timeout 30m' runs them one at a time.
TEST_FLAGS ?= -count=1 -p 2 -timeout 30m

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

##@ Build
# The release tag config/manager deploys, linked into the controller
# (pkg/manager.Version): its runner image defaults to its own image,
# ghcr.io/nodeupgrade/nodeupgrade:$(VERSION). The Dockerfile and `make image`
# (test/projectimage) link the same.
VERSION ?= $(shell sed -n 's/^  newTag: *//p' config/manager/kustomization.yaml)
LDFLAGS := -X github.com/nodeupgrade/nodeupgrade/pkg/manager.Version=$(VERSION)

.PHONY: build
build: ## Build the controller, the runner and the kubectl plugin (bin/kubectl-nodeupgrade: put it on PATH) into bin/
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/nodeupgrade-controller ./cmd/nodeupgrade-controller
	CGO_ENABLED=0 go build -trimpath -o $(BIN)/nodeupgrade-runner ./cmd/nodeupgrade-runner
	CGO_ENABLED=0 go build -trimpath -o $(BIN)/kubectl-nodeupgrade ./cmd/kubectl-nodeupgrade

.PHONY: image
image: ## Build the controller+runner image without docker into bin/image/ (OCI index: linux/amd64, linux/arm64, linux/arm/v7, as the Dockerfile describes it)
	hack/kubeedge-deps.sh image
	go run ./test/projectimage/cmd/image

.PHONY: release
release: image $(HELM) ## Build every release artifact into bin/release/$(VERSION)/: image archive, plugin for 6 platforms, krew manifest, chart, CRD and install YAML, checksums
	VERSION=$(VERSION) HELM=$(HELM) hack/release.sh

##@ Generate
# The Helm chart keeps copies of the generated CRD and controller RBAC and of
# config/monitoring (Helm reads only files inside the chart); test/manifests
# checks they match.
CHART := charts/nodeupgrade
.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD and RBAC manifests from markers (and their copies in the Helm chart)
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=nodeupgrade-controller paths=./pkg/... output:rbac:artifacts:config=config/rbac
	cp config/crd/bases/operations.kubeedge.io_nodeupgradejobs.yaml $(CHART)/crds/
	cp config/rbac/role.yaml $(CHART)/files/controller-role.yaml
	cp config/monitoring/alerts.yaml config/monitoring/dashboard.json $(CHART)/files/

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deep-copy code
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: fmt
fmt: ## gofmt the tree
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## golangci-lint
	$(GOLANGCI_LINT) run ./...

.PHONY: verify
verify: generate manifests ## Fail when generated code, manifests or formatting are stale
	@test -z "$$(gofmt -s -l $$(git ls-files '*.go'))" || { gofmt -s -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	@git diff --exit-code -- api config $(CHART) || { echo 'generated files are stale: run make generate manifests and commit'; exit 1; }
	@test -z "$$(git status --porcelain -- api config $(CHART))" || { git status --porcelain -- api config $(CHART); echo 'generated files are untracked'; exit 1; }
	go mod tidy -diff

##@ Test
.PHONY: tools
tools: ## Build etcd, kube-apiserver, kwok and helm from the Go module proxy into bin/, and extract Debian's prometheus (cached)
	ETCD_VERSION=$(ETCD_VERSION) KUBE_VERSION=$(KUBE_VERSION) KWOK_VERSION=$(KWOK_VERSION) HELM_VERSION=$(HELM_VERSION) hack/build-tools.sh etcd kube-apiserver kwok helm
	PROMETHEUS_VERSION=$(PROMETHEUS_VERSION) hack/prometheus.sh

.PHONY: test
test: tools ## Run every test: unit, envtest integration and kubectl end-to-end
	go test $(TEST_FLAGS) ./...

# A count, not a duration: with -fuzztime=<duration> Go 1.26's fuzz coordinator
# can fail a clean run with "context deadline exceeded" at the deadline
# (golang/go#75804, fixed in Go 1.27); a count never hits that path.
FUZZ_TIME ?= 300000x
.PHONY: fuzz
fuzz: ## Fuzz the version and image validation and the node-text cleaning briefly (FUZZ_TIME=300000x executions each, ~10s)
	go test -run='^$$' -fuzz='^FuzzNormalize$$' -fuzztime=$(FUZZ_TIME) ./pkg/imageref
	go test -run='^$$' -fuzz='^FuzzValidateVersion$$' -fuzztime=$(FUZZ_TIME) ./pkg/imageref
	go test -run='^$$' -fuzz='^FuzzClean$$' -fuzztime=$(FUZZ_TIME) ./pkg/nodetext

.PHONY: test-e2e
test-e2e: tools ## Run the local-cluster tests: localcluster, kubectl end-to-end, the demo's test (GO_TEST_ARGS=-ginkgo.focus=...)
	go test $(TEST_FLAGS) ./test/localcluster/... ./test/e2e/... ./test/demo/... $(GO_TEST_ARGS)

# What `make test-kubeedge` runs: v1.23.1 entirely (the target: keadm,
# edgecore, cloudcore) and v1.22.0's edgecore (the nodes' starting version).
# Each binary costs 3-7 min cold on 2 cores (about 10 under load).
KUBEEDGE_VERSIONS ?= v1.22.0:edgecore v1.23.1
# The version matrix adds the older nodes' edgecores and v1.22.0's keadm
# (the target of its v1.21.0 -> v1.22.0 cell).
KUBEEDGE_MATRIX_VERSIONS ?= $(KUBEEDGE_VERSIONS) v1.20.0:edgecore v1.21.0:edgecore v1.22.0:keadm
.PHONY: kubeedge-bins
kubeedge-bins: ## Build real keadm, edgecore and cloudcore from ../shared/third_party/kubeedge into bin/kubeedge-<version>/ (cached)
	hack/build-kubeedge.sh $(KUBEEDGE_VERSIONS)

.PHONY: kubeedge-rootfs
kubeedge-rootfs: ## Build the edge nodes' root file system into bin/ once (root; debootstrap)
	hack/kubeedge-deps.sh rootfs

.PHONY: test-kubeedge
test-kubeedge: kubeedge-bins kube-bins tools ## Real-KubeEdge tests (root): cloudcore, systemd-nspawn edge nodes, real keadm (~20-40 min)
	hack/kubeedge-deps.sh
	go test -tags kubeedge -count=1 -p 1 -parallel 4 -timeout 50m -skip '^(TestInCluster|TestInClusterHelm|TestVersionMatrix|TestMixedFleet)$$' ./test/kubeedgeworld/... ./test/kubeedge/...

.PHONY: test-kubeedge-matrix
test-kubeedge-matrix: tools ## The measured version matrix on real KubeEdge (root): nodes on v1.20.0-v1.22.0 upgraded to v1.23.1 and v1.21.0 to v1.22.0, each with a real rollback (docs/kubeedge.md)
	hack/build-kubeedge.sh $(KUBEEDGE_MATRIX_VERSIONS)
	hack/kubeedge-deps.sh
	go test -tags kubeedge -count=1 -p 1 -timeout 60m -v -run '^TestVersionMatrix$$' ./test/kubeedge/

# arm64 edge nodes under QEMU user emulation: keadm and edgecore
# cross-compiled (edgecore's cgo with gcc-aarch64-linux-gnu) and an arm64
# rootfs; cold, about 25 min of builds on 2 cores.
KUBEEDGE_ARM64_VERSIONS ?= v1.22.0@arm64:edgecore v1.23.1@arm64:keadm,edgecore
.PHONY: kubeedge-arm64
kubeedge-arm64: ## Build the arm64 nodes' KubeEdge binaries and root file system (root; cached)
	hack/kubeedge-deps.sh arm64-tools
	hack/build-kubeedge.sh $(KUBEEDGE_ARM64_VERSIONS)
	hack/kubeedge-deps.sh rootfs-arm64

.PHONY: test-kubeedge-arm64
test-kubeedge-arm64: kubeedge-bins kubeedge-arm64 tools ## One job over a mixed fleet: an amd64 and an emulated arm64 edge node upgraded to v1.23.1 (root)
	hack/kubeedge-deps.sh
	go test -tags kubeedge -count=1 -p 1 -timeout 40m -v -run '^TestMixedFleet$$' ./test/kubeedge/

.PHONY: kube-bins
kube-bins: ## Build kubelet, kube-proxy, kube-scheduler and kube-controller-manager into bin/ (cached), for the in-cluster world
	KUBE_VERSION=$(KUBE_VERSION) hack/build-tools.sh kubelet kube-proxy kube-scheduler kube-controller-manager

.PHONY: test-incluster
test-incluster: kubeedge-bins kube-bins tools ## In-cluster tests (root): the README's kustomize and Helm installs on real kubelet + scheduler + controller-manager, each upgrading a real edge node; a real Prometheus answers the dashboard (~10 min)
	hack/kubeedge-deps.sh
	go test -tags kubeedge -count=1 -p 1 -timeout 60m -run '^TestInCluster(Helm)?$$' -v ./test/kubeedge/

.PHONY: test-release
test-release: release $(KREW) tools ## Install the released plugin with krew from the release's manifest and run it against a real apiserver; check every artifact
	go test -tags release -count=1 -v ./test/release/

.PHONY: demo-kubeedge
demo-kubeedge: kubeedge-bins tools ## Demo on real KubeEdge (root): one real edgecore node upgraded live from v1.21.0 to v1.22.0 (DEMO_ARGS=--keep)
	hack/kubeedge-deps.sh
	go build -o $(BIN)/kubeedgedemo ./test/kubeedgedemo
	$(BIN)/kubeedgedemo $(DEMO_ARGS)

##@ Run
# Built and exec'd rather than `go run`: signals then reach the demo
# directly, so Ctrl-C or SIGTERM always stops the cluster in order.
.PHONY: demo
demo: tools ## Run the demo: ~30 simulated KubeEdge edge nodes upgraded by the real controller, steered with kubectl nodeupgrade (DEMO_ARGS=--exit-when-done)
	go build -o $(BIN)/demo ./test/demo
	exec $(BIN)/demo $(DEMO_ARGS)

.PHONY: test-unit
test-unit: ## Run the tests that need no control plane
	go test -count=1 -short $(UNIT_PKGS)

##@ Benchmarks and chaos
# Arguments of test/bench/cmd/bench, e.g. BENCH_ARGS='-nodes 10000 -concurrency 500 -repeats 1'.
# The controller and the control plane must not share the 2 cores with other
# test runs, or the numbers measure the noise: run it alone.
BENCH_ARGS ?=
.PHONY: bench
bench: tools ## Rollout benchmark, real controller on the local world (~50 min); updates docs/benchmarks.md (BENCH_ARGS=...)
	go run ./test/bench/cmd/bench $(BENCH_ARGS)

.PHONY: bench-quick
bench-quick: tools ## One 300-node benchmark run (~1 min), results kept out of docs
	go run ./test/bench/cmd/bench -quick

# NODEUPGRADE_CHAOS=full runs the documented sizes (docs/reliability.md); every
# run is strict: any node dispatched twice or any instant above concurrency
# fails it. CHAOS_ARGS go to go test, e.g. CHAOS_ARGS='-run TestControllerKilled'.
CHAOS_ARGS ?=
.PHONY: chaos
chaos: tools ## Full chaos/restart tests (300 nodes, 10 kills, leader kill, apiserver restart); docs/reliability.md (CHAOS_ARGS=-run ...)
	NODEUPGRADE_CHAOS=full go test -count=1 -p 1 -v -timeout 30m ./test/chaos/ $(CHAOS_ARGS)

$(CONTROLLER_GEN):
	CONTROLLER_TOOLS_VERSION=$(CONTROLLER_TOOLS_VERSION) hack/build-tools.sh controller-gen
$(GOLANGCI_LINT):
	GOLANGCI_LINT_VERSION=$(GOLANGCI_LINT_VERSION) hack/build-tools.sh golangci-lint
$(HELM):
	HELM_VERSION=$(HELM_VERSION) hack/build-tools.sh helm
$(KREW):
	KREW_VERSION=$(KREW_VERSION) hack/build-tools.sh krew
