# edgeunit Makefile. Every tool is built from Go modules into bin/.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

BIN ?= $(CURDIR)/bin
CONTROLLER_GEN_VERSION ?= v0.21.0
CONTROLLER_GEN ?= $(BIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
ENVTEST_DIR ?= $(BIN)/k8s
KUBEBUILDER_ASSETS ?= $(ENVTEST_DIR)
export KUBEBUILDER_ASSETS
IMG ?= ghcr.io/edgeunit/edgeunit:latest
GO_TEST_FLAGS ?=

.PHONY: all
all: build

##@ Development

$(CONTROLLER_GEN):
	mkdir -p $(BIN)
	GOBIN=$(BIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(BIN)/controller-gen $(CONTROLLER_GEN)

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths="./api/..."

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs, RBAC and webhook configuration.
	$(CONTROLLER_GEN) rbac:roleName=manager crd:generateEmbeddedObjectMeta=true webhook paths="./api/...;./controllers/...;./webhooks/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac output:webhook:artifacts:config=config/webhook

.PHONY: verify-gen
verify-gen: generate manifests bundle ## Fail if generated files are out of date.
	@if [ -n "$$(git status --porcelain -- api config bundle bundle.Dockerfile)" ]; then \
		echo "generated files are out of date; run 'make generate manifests bundle' and commit:"; \
		git status --porcelain -- api config bundle bundle.Dockerfile; git --no-pager diff -- api config bundle | head -50; exit 1; fi

.PHONY: fmt
fmt:
	go fmt ./...

.PHONY: vet
vet:
	go vet ./...

.PHONY: envtest
envtest: ## Build kube-apiserver and etcd for envtest into bin/k8s (once).
	./hack/build-k8s.sh

.PHONY: build
build: ## Build every binary into bin/.
	go build -o $(BIN)/ ./cmd/...

##@ Test

.PHONY: test
test: envtest vet ## Unit, envtest and integration tests.
	go test $(GO_TEST_FLAGS) -count=1 -timeout 30m ./...

.PHONY: e2e-deps
e2e-deps: ## Build and install what the real-node testbed runs (see test/e2e).
	./hack/build-k8s.sh etcd kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy
	./hack/build-containerd.sh
	./hack/build-e2e.sh
	./hack/install-node-packages.sh

.PHONY: e2e
e2e: e2e-deps ## Real-node end-to-end suite: real kubelets and containerd in namespaces (root).
	go test -tags e2e -count=1 -timeout 40m ./test/e2e/ -ginkgo.v -ginkgo.timeout=35m $(E2E_FLAGS)

.PHONY: bench
bench: envtest e2e-deps ## Benchmarks (see test/bench; the realnode one needs root).
	go test -tags e2e -p 1 -count=1 -timeout 90m -run '^$$' -bench . -benchtime 1x ./test/bench/...

# DEMO_REAL_NODE: auto adds, as root, a real edge node next to the demo's
# simulated cluster (so, as root, `make demo` runs e2e-deps first); on
# insists on it; off leaves it out.
DEMO_REAL_NODE ?= auto
DEMO_DEPS := envtest build
ifeq ($(shell id -u),0)
ifneq ($(DEMO_REAL_NODE),off)
DEMO_DEPS += e2e-deps
endif
endif

.PHONY: demo
demo: $(DEMO_DEPS) ## Start the embedded local environment (as root with a real edge node; DEMO_REAL_NODE=off without).
	$(BIN)/edgeunit-demo --assets $(ENVTEST_DIR) --real-node=$(DEMO_REAL_NODE)

##@ Images and OLM bundle

BUNDLE_VERSION ?= 0.1.0
BUNDLE_IMG ?= ghcr.io/edgeunit/edgeunit-bundle:v$(BUNDLE_VERSION)

.PHONY: docker-build
docker-build: ## Build the image holding every binary (entrypoint /manager).
	docker build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the manager image.
	docker push $(IMG)

.PHONY: bundle
bundle: manifests ## Regenerate the OLM bundle (bundle/, bundle.Dockerfile) from config/.
	go run ./hack/genbundle -version $(BUNDLE_VERSION)

.PHONY: bundle-build
bundle-build: ## Build the OLM bundle image.
	docker build -f bundle.Dockerfile -t $(BUNDLE_IMG) .

.PHONY: bundle-push
bundle-push: ## Push the OLM bundle image.
	docker push $(BUNDLE_IMG)

##@ Deployment

.PHONY: install
install: manifests ## Install the CRDs into the cluster of the current kubeconfig.
	kubectl apply --server-side -k config/crd

.PHONY: deploy
deploy: manifests ## Deploy the manager (image IMG) into the cluster of the current kubeconfig.
	kubectl kustomize config/default | sed 's|ghcr.io/edgeunit/edgeunit:latest|$(IMG)|' | kubectl apply --server-side -f -

.PHONY: undeploy
undeploy:
	kubectl delete --ignore-not-found -k config/default

.PHONY: help
help:
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
