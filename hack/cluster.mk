# Test control plane (see README "Developer notes: test control plane").
# Included by the root Makefile; CACHE, LORALAND_CACHE (exported), PYTHON and PY come from it.

CLUSTER_NAME ?= loraland-dev

# Binaries live in $(LORALAND_CACHE)/bin/<sha256(hack/go.sum)[:12]>/; hack/build.sh skips
# the build when that directory is complete, so this target is cheap when nothing changed.
# The real node needs root (tests/realnode skips without it), so only root builds it.
TEST_PREREQS += cluster-bin $(if $(filter 0,$(shell id -u)),node-bin)

.PHONY: cluster-bin cluster-up cluster-down node-bin test-realnode

# The real test node (kubelet, containerd, kube-proxy, CNI, CoreDNS, registry,
# local-path-provisioner) in $(LORALAND_CACHE)/bin/node-<hash of hack/node>/; installs the
# Debian packages it needs (runc, iptables, conntrack, busybox-static) when missing.
node-bin:
	hack/node/build.sh

cluster-bin:
	hack/build.sh

# Stdlib-only Python: works before (and without) the venv.
# REAL_NODE=1 adds a real node where pods run (tests/integration/realnode.py; root).
REAL_NODE ?=
cluster-up: cluster-bin $(if $(REAL_NODE),node-bin)
	$(PYTHON) tests/integration/cluster.py up --name $(CLUSTER_NAME) $(if $(REAL_NODE),--real-node)

cluster-down:
	$(PYTHON) tests/integration/cluster.py down --name $(CLUSTER_NAME)

# Pods really running on the real node (tests/realnode; root), on their own. `make test`
# runs them too; a bare `pytest tests` skips them unless LORALAND_REAL_NODE=1. The product
# tests build (or reuse) the images and push them to the node's registry themselves.
test-realnode: venv cluster-bin node-bin
	LORALAND_REAL_NODE=1 $(PY) -m pytest tests/realnode -m realnode
