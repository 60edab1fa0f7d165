#!/usr/bin/env bash
# Build the project's own images from images/Dockerfile (the file users build with) with
# Debian's buildah: no daemon, no Docker Hub.
#
#   hack/images.sh [--registry HOST:PORT] [--oci] [--print]     (make images REGISTRY=...)
#
# Contract (what the real-node tests rely on; see hack/images/README.md):
#   * three images, one build context, stages shared through buildah's layer cache:
#       localhost/loraland/operator:$TAG        Dockerfile --target operator
#       localhost/loraland/trainer:$TAG-cpu     --target trainer --build-arg VARIANT=cpu
#       localhost/loraland/server:$TAG-cpu      --target server  --build-arg VARIANT=cpu
#     TAG = <version>-<12 hex of sha256 over everything that goes into them>: the Dockerfile,
#     .dockerignore, pyproject.toml, uv.lock, README.md, the operator/ sources (tracked and
#     untracked, not ignored), the build arguments and the base rootfs. Same inputs, same
#     tag: a warm run finds the three images and builds nothing.
#   * --registry HOST:PORT (or REGISTRY=) pushes them as HOST:PORT/loraland/<name>:<tag>,
#     over plain HTTP (a registry on loopback), layers uncompressed: on loopback compressing
#     6 GB of layers costs minutes and saves nothing; layers the registry already holds are
#     not sent again.
#   * --oci (or LORALAND_IMAGES_OCI=1) writes them into one OCI image layout directory,
#     $LORALAND_CACHE/images/oci (blobs shared between the three), references
#     loraland/<name>:<tag>; e.g. `skopeo copy oci:DIR:loraland/operator:TAG docker://...`.
#   * stdout is only KEY=VALUE lines (logs go to stderr), also written to
#     $LORALAND_CACHE/images/images.env:
#       LORALAND_IMAGE_TAG, LORALAND_IMAGE_{OPERATOR,TRAINER,SERVER} (pushed references when
#       --registry, else local ones), LORALAND_IMAGES_OCI_DIR (with --oci),
#       LORALAND_BUILDAH_ROOT / LORALAND_BUILDAH_RUNROOT (buildah --root/--runroot: the
#       storage that holds the images, for `buildah from`/`run`/`inspect`) and
#       LORALAND_BUILDAH_RUNTIME (the OCI runtime `buildah run` must use here: runc).
#   * --base: only make the base image (printed as LORALAND_BASE_IMAGE).
#   * --print: compute and print the above without building (exits 3 if not built yet).
#   * after a build, older localhost/loraland images (other tags, other bases) are removed
#     from the storage, unless a container still uses them.
#   * runs are serialised by a lock ($LORALAND_CACHE/images/.lock): a second run waits.
#
# The base: Debian bookworm's own Python 3.11 from debootstrap (minbase), tarred and ADDed
# onto `FROM scratch`, passed through the Dockerfile's PYTHON_IMAGE argument. The Debian
# mirror is read from this machine's apt sources at build time. pip and uv inside RUN
# reach PyPI through this machine's CA bundle ($SSL_CERT_FILE), mounted read-only over the
# base's own bundle for the build only: a bind mount never becomes part of a layer.
#
# Everything lives under $LORALAND_CACHE/images: base/ (rootfs tarballs), storage/ and
# run/ (buildah), oci/. Needs root; installs buildah and debootstrap with apt-get when
# missing. Heavy steps run under `nice -n 10`.
set -euo pipefail
shopt -s inherit_errexit

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HACK_DIR/.." && pwd)"
CACHE="${LORALAND_CACHE:-$HOME/.cache/loraland}"
IMG_CACHE="$CACHE/images"
STORAGE="$IMG_CACHE/storage"
RUNROOT="$IMG_CACHE/run"
REGISTRY="${REGISTRY:-}"
OCI="${LORALAND_IMAGES_OCI:-}"
PRINT_ONLY=""
BASE_ONLY=""

# Bump when this script changes what it builds (arguments, base recipe).
RECIPE=1
SUITE=bookworm
# python3-venv: the Dockerfile makes venvs; python-is-python3: it calls `python` as the
# python images do; ca-certificates: the public roots, as the python images carry them.
BASE_PACKAGES=python3,python3-venv,python-is-python3,ca-certificates
BUILD_ARGS=(--build-arg VARIANT=cpu)
# RUN steps see this machine's CA bundle where the base keeps its own (a read-only bind
# mount over an existing file: nothing of it is committed); pip (Debian's) and uv
# (--system-certs in the Dockerfile) read it there, so no variable is needed.
CA_MOUNT=/etc/ssl/certs/ca-certificates.crt
# crun 1.8 (Debian's) refuses hybrid cgroups ("cgroups in hybrid mode not supported");
# runc runs RUN steps and `buildah run` there.
export BUILDAH_RUNTIME="${BUILDAH_RUNTIME:-runc}"

log() { echo "images: $*" >&2; }
die() { echo "hack/images.sh: $*" >&2; exit 1; }

while (($#)); do
    case "$1" in
        --registry) REGISTRY="${2:?--registry needs HOST:PORT}"; shift 2 ;;
        --registry=*) REGISTRY="${1#*=}"; shift ;;
        --oci) OCI=1; shift ;;
        --print) PRINT_ONLY=1; shift ;;
        --base) BASE_ONLY=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

BUILDAH=(buildah --root "$STORAGE" --runroot "$RUNROOT" --storage-driver overlay)
bah() { "${BUILDAH[@]}" "$@"; }
have_image() { bah inspect --type image "$1" >/dev/null 2>&1; }

ensure_tools() {
    local missing=()
    command -v buildah >/dev/null || missing+=(buildah)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v "$BUILDAH_RUNTIME" >/dev/null || [[ -x "/usr/sbin/$BUILDAH_RUNTIME" ]] \
        || missing+=("$BUILDAH_RUNTIME")
    ((${#missing[@]})) || return 0
    [[ $EUID -eq 0 ]] || die "needs root to install ${missing[*]} (and to build)"
    log "installing ${missing[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 \
        "${missing[@]}" >&2
}

# The Debian mirror this machine's apt already uses (deb822 sources, then sources.list).
debian_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        uri="$(awk -v suite="$SUITE" '
            /^[[:space:]]*$/ { if (s && u) { print u; exit } s = 0; u = ""; next }
            /^URIs:/ { u = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) s = 1 }
            END { if (s && u) print u }' "$f" | head -n1)"
        [[ -n "$uri" ]] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        uri="$(awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2; exit }' "$f")"
        [[ -n "$uri" ]] && { echo "$uri"; return; }
    done
    die "no Debian $SUITE mirror in /etc/apt sources"
}

# Base rootfs: cached by its recipe; its content digest goes into the image tag.
BASE_KEY="$(printf '%s\n' "$RECIPE" "$SUITE" minbase "$BASE_PACKAGES" | sha256sum | cut -c1-12)"
BASE_DIR="$IMG_CACHE/base/$BASE_KEY"

build_base_rootfs() {
    [[ -f "$BASE_DIR/.complete" ]] && return 0
    local mirror tmp
    mirror="$(debian_mirror)"
    mkdir -p "$IMG_CACHE/base"
    tmp="$(mktemp -d "$IMG_CACHE/base/.tmp.XXXXXX")"
    log "debootstrap $SUITE (minbase + $BASE_PACKAGES)"
    nice -n 10 debootstrap --variant=minbase --include="$BASE_PACKAGES" \
        "$SUITE" "$tmp/rootfs" "$mirror" >&2
    # What a container image does not need: downloaded .debs, package lists, logs. The
    # sources point at Debian's public mirror, not at whatever this machine uses.
    rm -rf "$tmp"/rootfs/var/cache/apt/archives/*.deb "$tmp"/rootfs/var/lib/apt/lists/* \
        "$tmp"/rootfs/var/log/* "$tmp"/rootfs/var/cache/debconf/*-old
    printf 'deb http://deb.debian.org/debian %s main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
        "$SUITE" "$SUITE" >"$tmp/rootfs/etc/apt/sources.list"
    tar --numeric-owner --xattrs -C "$tmp/rootfs" -cf "$tmp/rootfs.tar" .
    sha256sum "$tmp/rootfs.tar" | cut -d' ' -f1 >"$tmp/rootfs.sha256"
    rm -rf "$tmp/rootfs" "$BASE_DIR"
    mv "$tmp" "$BASE_DIR"
    touch "$BASE_DIR/.complete"
}

# The base as an image in buildah's storage: FROM scratch + ADD of the rootfs tarball.
base_image() {
    local ref="localhost/loraland/base:$(cut -c1-12 "$BASE_DIR/rootfs.sha256")"
    if ! have_image "$ref"; then
        log "importing the base rootfs as $ref"
        printf 'FROM scratch\nADD rootfs.tar /\nCMD ["python3"]\n' >"$BASE_DIR/Containerfile"
        nice -n 10 "${BUILDAH[@]}" bud --quiet --layers=false -f "$BASE_DIR/Containerfile" -t "$ref" \
            "$BASE_DIR" >&2
    fi
    echo "$ref"
}

# Files of the build context, as .dockerignore leaves it (the same ignores as .gitignore).
context_files() {
    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$ROOT" ls-files -co --exclude-standard -- operator | sort
    else
        (cd "$ROOT" && find operator -type f ! -path '*/__pycache__/*' \
            ! -path '*.egg-info/*' | sort)
    fi
}

image_tag() {
    local version digest
    version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -n1)"
    digest="$(
        cd "$ROOT"
        {
            printf 'recipe %s\nargs %s\nbase %s\n' "$RECIPE" "${BUILD_ARGS[*]}" \
                "$(cat "$BASE_DIR/rootfs.sha256")"
            { printf '%s\n' images/Dockerfile .dockerignore pyproject.toml uv.lock README.md
              context_files; } | while read -r f; do
                [[ -f "$f" ]] && printf '%s %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$f"
            done
        } | sha256sum | cut -c1-12
    )"
    echo "$version-$digest"
}

declare -A TARGET_OF=([operator]=operator [trainer]=trainer [server]=server)
declare -A SUFFIX_OF=([operator]="" [trainer]=-cpu [server]=-cpu)
NAMES=(operator trainer server)
local_ref() { echo "localhost/loraland/$1:$TAG${SUFFIX_OF[$1]}"; }

build_images() {
    local name base="$1"
    for name in "${NAMES[@]}"; do
        if have_image "$(local_ref "$name")"; then
            log "$(local_ref "$name") is up to date"
            continue
        fi
        log "building $(local_ref "$name")"
        local start=$SECONDS
        nice -n 10 "${BUILDAH[@]}" bud --layers --pull=never \
            -f "$ROOT/images/Dockerfile" --target "${TARGET_OF[$name]}" \
            --build-arg PYTHON_IMAGE="$base" "${BUILD_ARGS[@]}" \
            -v "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}:$CA_MOUNT:ro" \
            -t "$(local_ref "$name")" "$ROOT" >&2
        log "built $(local_ref "$name") in $((SECONDS - start)) s"
    done
}

push_images() {
    local name start=$SECONDS
    for name in "${NAMES[@]}"; do
        log "pushing $(local_ref "$name") to $REGISTRY"
        nice -n 10 "${BUILDAH[@]}" push --quiet --tls-verify=false --disable-compression \
            "$(local_ref "$name")" "docker://$REGISTRY/loraland/$name:$TAG${SUFFIX_OF[$name]}" >&2
    done
    log "pushed to $REGISTRY in $((SECONDS - start)) s"
}

write_oci() {
    local name start=$SECONDS
    mkdir -p "$IMG_CACHE/oci"
    for name in "${NAMES[@]}"; do
        nice -n 10 "${BUILDAH[@]}" push --quiet --disable-compression \
            "$(local_ref "$name")" "oci:$IMG_CACHE/oci:loraland/$name:$TAG${SUFFIX_OF[$name]}" >&2
    done
    log "wrote the OCI layout $IMG_CACHE/oci in $((SECONDS - start)) s"
}

# Every source change makes three new images that share the dependency layers with the old
# ones but not their own (the sources, the baked model): left alone, the storage grew by
# ~25 GB over one working day. Older loraland images and bases go once the current ones
# are built; an image a container still uses is kept (rmi without --force refuses it), and
# so are the dependency layers the current images share.
prune_old_images() {
    local ref keep_base="$1" removed=0
    while read -r ref; do
        case "$ref" in
            "$(local_ref operator)" | "$(local_ref trainer)" | "$(local_ref server)" | "$keep_base") ;;
            localhost/loraland/*)
                bah rmi "$ref" >/dev/null 2>&1 && removed=$((removed + 1)) ;;
        esac
    done < <(bah images --format '{{.Name}}:{{.Tag}}')
    bah rmi --prune >/dev/null 2>&1 || true
    ((removed == 0)) || log "removed $removed older images from $STORAGE"
}

print_env() {
    local name ref upper
    echo "LORALAND_IMAGE_TAG=$TAG"
    for name in "${NAMES[@]}"; do
        upper="$(tr '[:lower:]' '[:upper:]' <<<"$name")"
        if [[ -n "$REGISTRY" ]]; then
            ref="$REGISTRY/loraland/$name:$TAG${SUFFIX_OF[$name]}"
        else
            ref="$(local_ref "$name")"
        fi
        echo "LORALAND_IMAGE_$upper=$ref"
    done
    [[ -z "$OCI" ]] || echo "LORALAND_IMAGES_OCI_DIR=$IMG_CACHE/oci"
    echo "LORALAND_BUILDAH_ROOT=$STORAGE"
    echo "LORALAND_BUILDAH_RUNROOT=$RUNROOT"
    echo "LORALAND_BUILDAH_RUNTIME=$BUILDAH_RUNTIME"
}

if [[ -n "$PRINT_ONLY" ]]; then
    [[ -f "$BASE_DIR/.complete" ]] || { log "base not built yet"; exit 3; }
    TAG="$(image_tag)"
    for name in "${NAMES[@]}"; do have_image "$(local_ref "$name")" || exit 3; done
    print_env
    exit 0
fi

ensure_tools
mkdir -p "$IMG_CACHE"
# One build at a time: `make test` starts one in the background while the Go binaries
# compile, and the image tests and the real-node fixture run this script again; a second
# run waits here, then finds the images built and only pushes what it was asked to.
exec 9>"$IMG_CACHE/.lock"
if ! flock -n 9; then
    log "waiting for another hack/images.sh to finish"
    flock 9
fi
build_base_rootfs
BASE_REF="$(base_image)"
[[ -z "$BASE_ONLY" ]] || { echo "LORALAND_BASE_IMAGE=$BASE_REF"; exit 0; }
TAG="$(image_tag)"
build_images "$BASE_REF"
prune_old_images "$BASE_REF"
[[ -z "$REGISTRY" ]] || push_images
[[ -z "$OCI" ]] || write_oci
print_env | tee "$IMG_CACHE/images.env"
