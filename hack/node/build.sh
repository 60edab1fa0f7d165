#!/usr/bin/env bash
# Build the real test node's binaries from the Go modules pinned under hack/node/:
#   kube/         kubelet, kube-proxy (k8s.io/kubernetes, the control plane's version)
#   containerd/   containerd, containerd-shim-runc-v2, ctr; CNI bridge, host-local,
#                 loopback, portmap (github.com/containernetworking/plugins)
#   coredns/      CoreDNS with the plugins the cluster DNS uses
#   registry/     the distribution registry
#   provisioner/  rancher's local-path-provisioner
#   tools/        pause, runc-oom, testserver, ocipush (this repository's own programs)
# Each is its own module so their dependency graphs never meet. Debian packages the node
# needs at run time (runc, iptables, conntrack, busybox-static) are installed when missing.
#
# Binaries land in $LORALAND_CACHE/bin/node-<first 12 hex of sha256 of hack/node>/; a
# complete directory is never rebuilt. The directory is printed on the last line of stdout.
set -euo pipefail

NODE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${LORALAND_CACHE:-$HOME/.cache/loraland}"
HASH="$(cd "$NODE_DIR" && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' -o -name '*.sh' \) \
    | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)"
BIN_DIR="$CACHE/bin/node-$HASH"
BINARIES=(kubelet kube-proxy containerd containerd-shim-runc-v2 ctr bridge host-local loopback portmap
    coredns registry local-path-provisioner pause runc-oom testserver ocipush)
DEB_PACKAGES=(runc iptables conntrack busybox-static iproute2 util-linux)

install_debs() {
    local missing=() p
    for p in "${DEB_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    if [[ $(id -u) != 0 ]]; then
        echo "hack/node/build.sh: the real test node needs Debian packages ${missing[*]} (run as root or install them)" >&2
        exit 1
    fi
    echo "installing ${missing[*]}" >&2
    apt-get update -qq -o DPkg::Lock::Timeout=600 >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}" >&2
}

complete() {
    [[ -f "$BIN_DIR/.complete" ]] || return 1
    local b
    for b in "${BINARIES[@]}"; do [[ -x "$BIN_DIR/$b" ]] || return 1; done
}

install_debs
if complete; then
    echo "node binaries up to date in $BIN_DIR" >&2
    echo "$BIN_DIR"
    exit 0
fi

export GOCACHE="$CACHE/go/build"
export GOMODCACHE="$CACHE/go/mod"
export GOTOOLCHAIN=local
export GOFLAGS=-mod=readonly
export CGO_ENABLED=0
JOBS="${LORALAND_GO_JOBS:-2}"
export GOGC="${GOGC:-400}"  # as in hack/build.sh: about 15% less compile time

mkdir -p "$CACHE/bin"
TMP_DIR="$(mktemp -d "$CACHE/bin/.build-node-$HASH.XXXXXX")"
chmod 755 "$TMP_DIR"
trap 'rm -rf "$TMP_DIR"' EXIT
NOW="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

modver() { (cd "$NODE_DIR/$1" && go list -m -f '{{.Version}}' "$2"); }
build() { # module-dir ldflags package...
    local dir="$1" ldflags="$2"
    shift 2
    (cd "$NODE_DIR/$dir" && nice -n 10 go build -p "$JOBS" -trimpath -ldflags "-s -w $ldflags" -o "$TMP_DIR/" "$@")
}

KUBE="$(modver kube k8s.io/kubernetes)"
CONTAINERD="$(modver containerd github.com/containerd/containerd/v2)"
CNI="$(modver containerd github.com/containernetworking/plugins)"
COREDNS="$(modver coredns github.com/coredns/coredns)"
REGISTRY="$(modver registry github.com/distribution/distribution/v3)"
LPP="$(modver provisioner github.com/rancher/local-path-provisioner)"
echo "building kubelet $KUBE, containerd $CONTAINERD, CNI plugins $CNI, CoreDNS $COREDNS," \
    "registry $REGISTRY, local-path-provisioner $LPP into $BIN_DIR (-p $JOBS)" >&2

KUBE_LDFLAGS=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    KUBE_LDFLAGS+=" -X $pkg.gitVersion=$KUBE -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(cut -d. -f2 <<<"$KUBE")"
    KUBE_LDFLAGS+=" -X $pkg.gitCommit= -X $pkg.gitTreeState=clean -X $pkg.buildDate=$NOW"
done

declare -A SECONDS_TAKEN=()
timed() { local name="$1" start=$SECONDS; shift; "$@"; SECONDS_TAKEN[$name]=$((SECONDS - start)); }

timed tools build tools "" ./cmd/pause ./cmd/runc-oom ./cmd/testserver ./cmd/ocipush
timed containerd build containerd \
    "-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI" \
    -tags "no_btrfs no_devmapper no_zfs" \
    github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr \
    github.com/containernetworking/plugins/plugins/main/bridge \
    github.com/containernetworking/plugins/plugins/ipam/host-local \
    github.com/containernetworking/plugins/plugins/main/loopback \
    github.com/containernetworking/plugins/plugins/meta/portmap
timed kube build kube "$KUBE_LDFLAGS" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
timed coredns build coredns "-X github.com/coredns/coredns/coremain.GitCommit=module-$COREDNS" .
timed registry build registry "-X github.com/distribution/distribution/v3/version.version=$REGISTRY" \
    github.com/distribution/distribution/v3/cmd/registry
timed provisioner build provisioner "-X main.VERSION=$LPP" github.com/rancher/local-path-provisioner

{
    for k in tools containerd kube coredns registry provisioner; do echo "build seconds $k: ${SECONDS_TAKEN[$k]}"; done
    echo "kubelet: $("$TMP_DIR/kubelet" --version 2>&1 | head -n1)"
    echo "kube-proxy: $("$TMP_DIR/kube-proxy" --version 2>&1 | head -n1)"
    echo "containerd: $("$TMP_DIR/containerd" --version 2>&1 | head -n1)"
    echo "coredns: $("$TMP_DIR/coredns" -version 2>&1 | head -n1)"
    echo "registry: $("$TMP_DIR/registry" --version 2>&1 | head -n1)"
    echo "bridge: $(CNI_COMMAND=VERSION "$TMP_DIR/bridge" 2>&1 | head -n1)"
} | tee "$TMP_DIR/build.log" >&2
touch "$TMP_DIR/.complete"

# Publish atomically so a concurrent or interrupted build never leaves a half directory.
rm -rf "$BIN_DIR"
mv "$TMP_DIR" "$BIN_DIR"
trap - EXIT
echo "$BIN_DIR"
