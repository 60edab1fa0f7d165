#!/usr/bin/env bash
# Build the integration-test control plane from the Go modules pinned in hack/go.mod:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok, kwokctl
# and helm, each version-stamped through -ldflags.
#
# Binaries land in $LORALAND_CACHE/bin/<first 12 hex of sha256(hack/go.sum)>/; when that
# directory is already complete the build is skipped. The script prints the directory on
# its last line of stdout (everything else goes to stderr).
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${LORALAND_CACHE:-$HOME/.cache/loraland}"
HASH="$(sha256sum "$HACK_DIR/go.sum" | cut -c1-12)"
BIN_DIR="$CACHE/bin/$HASH"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl helm)

complete() {
    [[ -f "$BIN_DIR/.complete" ]] || return 1
    local b
    for b in "${BINARIES[@]}"; do [[ -x "$BIN_DIR/$b" ]] || return 1; done
}

if complete; then
    echo "cluster binaries up to date in $BIN_DIR" >&2
    echo "$BIN_DIR"
    exit 0
fi

if ! command -v go >/dev/null; then
    echo "hack/build.sh: Go $(sed -n 's/^go //p' "$HACK_DIR/go.mod") or newer is needed to build the test control plane" >&2
    exit 1
fi

# Everything Go writes stays under the loraland cache; never fetch a newer toolchain.
export GOCACHE="$CACHE/go/build"
export GOMODCACHE="$CACHE/go/mod"
export GOTOOLCHAIN=local
export GOFLAGS=-mod=readonly
export CGO_ENABLED=0
# Two compile jobs keep the peak within a 2-core, 24 GiB machine. A lazier GC in the
# compiler (GOGC=400) cut a cold build of the registry module from 148-156 s to 119-133 s
# here (two runs each) for a larger, still modest, peak memory.
JOBS="${LORALAND_GO_JOBS:-2}"
export GOGC="${GOGC:-400}"

cd "$HACK_DIR"
modver() { go list -m -f '{{.Version}}' "$1"; }
KUBE="$(modver k8s.io/kubernetes)"     # v1.36.3
KUBE_MINOR="$(cut -d. -f2 <<<"$KUBE")"
KWOK="$(modver sigs.k8s.io/kwok)"
HELM="$(modver helm.sh/helm/v3)"
ETCD="$(modver go.etcd.io/etcd/server/v3)"
NOW="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# The same flags go to every binary: -X on a symbol a binary does not link is ignored,
# and all of them link the same k8s.io libraries, so the stamp is true for each.
LDFLAGS=(-s -w)
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    LDFLAGS+=(
        "-X $pkg.gitVersion=$KUBE"
        "-X $pkg.gitMajor=1"
        "-X $pkg.gitMinor=$KUBE_MINOR"
        "-X $pkg.gitCommit="
        "-X $pkg.gitTreeState=clean"
        "-X $pkg.buildDate=$NOW"
    )
done
LDFLAGS+=(
    "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK"
    "-X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$KUBE"
    "-X helm.sh/helm/v3/internal/version.version=$HELM"
    "-X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
    "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$KUBE_MINOR"
    "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
    "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$KUBE_MINOR"
    "-X go.etcd.io/etcd/api/v3/version.GitSHA=module-$ETCD"
)

PKGS=(
    k8s.io/kubernetes/cmd/kube-apiserver
    k8s.io/kubernetes/cmd/kube-controller-manager
    k8s.io/kubernetes/cmd/kube-scheduler
    k8s.io/kubernetes/cmd/kubectl
    ./cmd/etcd
    sigs.k8s.io/kwok/cmd/kwok
    sigs.k8s.io/kwok/cmd/kwokctl
    helm.sh/helm/v3/cmd/helm
)

mkdir -p "$CACHE/bin"
TMP_DIR="$(mktemp -d "$CACHE/bin/.build-$HASH.XXXXXX")"
chmod 755 "$TMP_DIR"
trap 'rm -rf "$TMP_DIR"' EXIT

echo "building kubernetes $KUBE, etcd $ETCD, kwok $KWOK, helm $HELM into $BIN_DIR (-p $JOBS)" >&2
# go build fetches only the modules it needs (go mod download would fetch every test dependency too).
TIME=()
if [[ -x /usr/bin/time ]]; then TIME=(/usr/bin/time -v -o "$TMP_DIR/build.time"); fi
start=$SECONDS
# One invocation, so packages shared between the binaries are compiled once.
"${TIME[@]}" go build -p "$JOBS" -trimpath -ldflags "${LDFLAGS[*]}" -o "$TMP_DIR/" "${PKGS[@]}"
elapsed=$((SECONDS - start))

{
    echo "build seconds: $elapsed"
    if [[ -f "$TMP_DIR/build.time" ]]; then
        grep -E 'Maximum resident set size|Elapsed \(wall clock\)' "$TMP_DIR/build.time"
    fi
    for b in kube-apiserver kube-controller-manager kube-scheduler etcd kwok kwokctl; do
        echo "$b: $("$TMP_DIR/$b" --version 2>&1 | head -n1)"
    done
    echo "kubectl: $("$TMP_DIR/kubectl" version --client 2>&1 | head -n1)"
    echo "helm: $("$TMP_DIR/helm" version --short 2>&1)"
} | tee "$TMP_DIR/build.log" >&2
rm -f "$TMP_DIR/build.time"
touch "$TMP_DIR/.complete"

# Publish atomically so a concurrent or interrupted build never leaves a half directory.
rm -rf "$BIN_DIR"
mv "$TMP_DIR" "$BIN_DIR"
trap - EXIT
echo "$BIN_DIR"
