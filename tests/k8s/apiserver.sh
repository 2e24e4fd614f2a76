#!/usr/bin/env bash
# Build and run a REAL kube-apiserver 1.20.2 (+ kube-controller-manager) from
# Debian's own `kubernetes` source package, for the e2e suite.
#
# Usage: tests/k8s/apiserver.sh install|build|up|down|clean|status|env
#
#   install  apt deps (only if missing), enable deb-src, fetch + extract source
#   build    build kube-apiserver, kube-controller-manager, kubectl into the
#            cache dir unless already there (idempotent; prints timings)
#   up       install+build if needed, start etcd, kube-apiserver and
#            kube-controller-manager on 127.0.0.1, wait for /readyz, write
#            $STATE/kubeconfig and print the export line. Idempotent.
#   down     stop everything started by `up` via pid files (state kept)
#   clean    down + remove the state dir (the build cache is kept)
#   status   show daemon pids and /readyz
#   env      print the export line; use: eval "$(tests/k8s/apiserver.sh env)"
#
# Environment knobs:
#   SLURM_MAINT_K8S_CACHE  build cache (default ~/.cache/slurm-maint/k8s-1.20.2);
#                          source in $CACHE/src, binaries in $CACHE/bin
#   K8S_TEST_DIR           state dir (default <repo root>/.k8s-test, gitignored)
#   K8S_APISERVER_PORT     secure port (default 16443)
#   K8S_ETCD_CLIENT_PORT   etcd client port (default 12379)
#   K8S_ETCD_PEER_PORT     etcd peer port (default 12380)
#   K8S_UP_TIMEOUT         seconds to wait for /readyz (default 60)
#   K8S_BUILD_WHAT         components to build (default
#                          "kube-apiserver kube-controller-manager kubectl")
#   K8S_FRESH=1            wipe etcd data on `up` (default: data is kept, so
#                          down/up keeps all objects)
#   K8S_PRELOAD_CRDS=1     create/replace the repo's crds/*.yaml (plain JSON, not
#                          server-side apply) before kube-controller-manager
#                          starts, so its garbage collector watches them at once
#                          (otherwise it notices new CRDs at its 30 s resync)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
K8S_VERSION=1.20.2
CACHE="${SLURM_MAINT_K8S_CACHE:-$HOME/.cache/slurm-maint/k8s-$K8S_VERSION}"
SRC_PARENT="$CACHE/src"
BIN="$CACHE/bin"
STATE="${K8S_TEST_DIR:-$REPO_ROOT/.k8s-test}"
PORT="${K8S_APISERVER_PORT:-16443}"
ETCD_CLIENT_PORT="${K8S_ETCD_CLIENT_PORT:-12379}"
ETCD_PEER_PORT="${K8S_ETCD_PEER_PORT:-12380}"
UP_TIMEOUT="${K8S_UP_TIMEOUT:-60}"
BUILD_WHAT="${K8S_BUILD_WHAT:-kube-apiserver kube-controller-manager kubectl}"

RUN="$STATE/run"
LOG="$STATE/log"
PKI="$STATE/pki"
ETCD_DATA="$STATE/etcd"
KUBECONFIG_OUT="$STATE/kubeconfig"
TOKEN_FILE="$PKI/admin.token"
ETCD_PID="$RUN/etcd.pid"
APISERVER_PID="$RUN/kube-apiserver.pid"
KCM_PID="$RUN/kube-controller-manager.pid"
DEBSRC_FILE=/etc/apt/sources.list.d/slurm-maint-deb-src.sources
# needed to run (etcd, certs, readiness probe, CRD preload)
RUNTIME_PKGS=(etcd-server openssl curl jq python3-yaml ca-certificates)
# needed to fetch and build
BUILD_PKGS=(golang-go rsync golang-github-modern-go-reflect2-dev dpkg-dev make)

log() { echo "apiserver.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

SUDO=()
[[ $(id -u) -eq 0 ]] || SUDO=(sudo)

# --- pid helpers (same conventions as tests/slurm/cluster.sh) ---------------

# Print the pid in pid file $1 if that process is alive and its cmdline contains $2.
live_pid() {
    local file="$1" match="$2" pid
    [[ -r "$file" ]] || return 1
    pid="$(tr -dc '0-9' < "$file")"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    # a zombie is not alive
    [[ "$(awk '{sub(/.*\) /, ""); print $1}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$match" || return 1
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

# --- install ------------------------------------------------------------------

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
    server: https://127.0.0.1:$PORT
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

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- daemons ------------------------------------------------------------------------

# start_bg NAME PIDFILE LOGFILE CMD...: start CMD in its own session, record its pid.
start_bg() {
    local name="$1" pidfile="$2" logfile="$3"
    shift 3
    log "starting $name"
    echo "==== $(date -u +%FT%TZ) $*" >> "$logfile"
    setsid "$@" >> "$logfile" 2>&1 < /dev/null &
    echo $! > "$pidfile"
}

etcd_bin() { command -v etcd || echo /usr/bin/etcd; }

start_etcd() {
    local pid
    if pid="$(live_pid "$ETCD_PID" "$ETCD_DATA")"; then
        log "etcd already running (pid $pid)"
        return 0
    fi
    port_in_use "$ETCD_CLIENT_PORT" && die "port $ETCD_CLIENT_PORT (etcd client) is in use by someone else"
    port_in_use "$ETCD_PEER_PORT" && die "port $ETCD_PEER_PORT (etcd peer) is in use by someone else"
    mkdir -p "$ETCD_DATA"
    chmod 0700 "$ETCD_DATA"
    start_bg etcd "$ETCD_PID" "$LOG/etcd.log" "$(etcd_bin)" \
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
    for ((i = 0; i < 100; i++)); do
        curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health" 2>/dev/null | grep -q '"health":"true"' && return 0
        live_pid "$ETCD_PID" "$ETCD_DATA" >/dev/null || break
        sleep 0.2
    done
    tail -n 30 "$LOG/etcd.log" >&2 || true
    die "etcd did not become healthy"
}

start_apiserver() {
    local pid
    if pid="$(live_pid "$APISERVER_PID" "$PKI/tokens.csv")"; then
        log "kube-apiserver already running (pid $pid)"
        return 0
    fi
    port_in_use "$PORT" && die "port $PORT is in use by someone else (set K8S_APISERVER_PORT)"
    start_bg kube-apiserver "$APISERVER_PID" "$LOG/kube-apiserver.log" "$BIN/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --etcd-prefix /registry \
        --bind-address 127.0.0.1 \
        --advertise-address 127.0.0.1 \
        --secure-port "$PORT" \
        --insecure-port 0 \
        --cert-dir "$PKI" \
        --tls-cert-file "$PKI/apiserver.crt" \
        --tls-private-key-file "$PKI/apiserver.key" \
        --client-ca-file "$PKI/ca.crt" \
        --token-auth-file "$PKI/tokens.csv" \
        --authorization-mode RBAC \
        --anonymous-auth=false \
        --service-account-key-file "$PKI/sa.pub" \
        --service-account-signing-key-file "$PKI/sa.key" \
        --service-account-issuer https://kubernetes.default.svc \
        --api-audiences https://kubernetes.default.svc \
        --service-cluster-ip-range 10.0.0.0/24 \
        --endpoint-reconciler-type none \
        --allow-privileged=true \
        --profiling=false \
        --v 1
}

start_controller_manager() {
    [[ -x "$BIN/kube-controller-manager" ]] || { log "no kube-controller-manager built: skipping (no GC / namespace deletion)"; return 0; }
    local pid
    if pid="$(live_pid "$KCM_PID" "$KUBECONFIG_OUT")"; then
        log "kube-controller-manager already running (pid $pid)"
        return 0
    fi
    mkdir -p "$STATE/kcm"
    start_bg kube-controller-manager "$KCM_PID" "$LOG/kube-controller-manager.log" "$BIN/kube-controller-manager" \
        --kubeconfig "$KUBECONFIG_OUT" \
        --authentication-kubeconfig "$KUBECONFIG_OUT" \
        --authorization-kubeconfig "$KUBECONFIG_OUT" \
        --authentication-skip-lookup=true \
        --bind-address 127.0.0.1 \
        --secure-port "${K8S_KCM_PORT:-16457}" \
        --port 0 \
        --cert-dir "$STATE/kcm" \
        --controllers garbagecollector,namespace,serviceaccount-token,serviceaccount,clusterrole-aggregation \
        --use-service-account-credentials=false \
        --service-account-private-key-file "$PKI/sa.key" \
        --root-ca-file "$PKI/ca.crt" \
        --leader-elect=false \
        --profiling=false \
        --v 1
}

api_get() {
    curl -fsS --max-time 5 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(admin_token)" \
        "https://127.0.0.1:$PORT$1"
}

# create or replace each CRD (server-side apply of these CRDs fails on 1.20:
# it does not know x-kubernetes-validations), wait for Established.
preload_crds() {
    local f name rv code
    for f in "$REPO_ROOT"/crds/*.yaml; do
        [[ -f "$f" ]] || continue
        python3 -c 'import yaml,json,sys; json.dump(yaml.safe_load(open(sys.argv[1])), open(sys.argv[2], "w"))' \
            "$f" "$RUN/crd.json"
        name="$(jq -r .metadata.name "$RUN/crd.json")"
        rv="$(api_get "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$name" 2>/dev/null \
            | jq -r '.metadata.resourceVersion // empty' || true)"
        if [[ -n "$rv" ]]; then
            jq --arg rv "$rv" '.metadata.resourceVersion = $rv' "$RUN/crd.json" > "$RUN/crd.put.json"
            code="$(api_send PUT "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$name" "$RUN/crd.put.json")"
        else
            code="$(api_send POST /apis/apiextensions.k8s.io/v1/customresourcedefinitions "$RUN/crd.json")"
        fi
        [[ "$code" == 20[01] ]] || die "CRD $name: HTTP $code: $(cat "$RUN/api.out")"
        local i
        for ((i = 0; i < 50; i++)); do
            api_get "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$name" 2>/dev/null \
                | jq -e '.status.conditions[]? | select(.type=="Established" and .status=="True")' >/dev/null && break
            sleep 0.2
        done
        log "CRD $name established"
    done
    rm -f "$RUN"/crd.json "$RUN"/crd.put.json "$RUN/api.out"
}

# api_send METHOD PATH JSONFILE: prints the HTTP code, body in $RUN/api.out
api_send() {
    curl -sS --max-time 10 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(admin_token)" \
        -H 'Content-Type: application/json' -X "$1" --data-binary "@$3" \
        -o "$RUN/api.out" -w '%{http_code}' "https://127.0.0.1:$PORT$2"
}

wait_ready() {
    local deadline=$((SECONDS + UP_TIMEOUT))
    while ((SECONDS < deadline)); do
        [[ "$(api_get /readyz 2>/dev/null)" == ok ]] && return 0
        live_pid "$APISERVER_PID" "$PKI/tokens.csv" >/dev/null || { log "kube-apiserver exited"; break; }
        sleep 0.3
    done
    log "kube-apiserver not ready within ${UP_TIMEOUT}s"
    api_get '/readyz?verbose' >&2 2>/dev/null || true
    echo "===== $LOG/kube-apiserver.log (last 40 lines) =====" >&2
    tail -n 40 "$LOG/kube-apiserver.log" >&2 || true
    return 1
}

all_up() {
    live_pid "$ETCD_PID" "$ETCD_DATA" >/dev/null || return 1
    live_pid "$APISERVER_PID" "$PKI/tokens.csv" >/dev/null || return 1
    if [[ -x "$BIN/kube-controller-manager" ]]; then
        live_pid "$KCM_PID" "$KUBECONFIG_OUT" >/dev/null || return 1
    fi
    [[ "$(api_get /readyz 2>/dev/null)" == ok ]]
}

cmd_up() {
    have_binaries || cmd_build
    [[ -x "$BIN/kube-apiserver" ]] || die "no kube-apiserver in $BIN"
    ensure_apt_pkgs "${RUNTIME_PKGS[@]}"
    mkdir -p "$RUN" "$LOG"
    if [[ -s "$TOKEN_FILE" ]] && all_up; then
        log "already up (https://127.0.0.1:$PORT)"
        cmd_env
        return 0
    fi
    local t0=$SECONDS
    if [[ "${K8S_FRESH:-0}" == 1 ]] && ! live_pid "$ETCD_PID" "$ETCD_DATA" >/dev/null; then
        log "K8S_FRESH=1: wiping etcd data"
        rm -rf "$ETCD_DATA"
    fi
    ensure_pki
    write_kubeconfig
    start_etcd
    start_apiserver
    wait_ready || die "kube-apiserver did not come up (logs in $LOG)"
    log "kube-apiserver ready after $((SECONDS - t0)) s"
    [[ "${K8S_PRELOAD_CRDS:-0}" == 1 ]] && preload_crds
    start_controller_manager
    if [[ -x "$BIN/kube-controller-manager" ]]; then
        sleep 1
        live_pid "$KCM_PID" "$KUBECONFIG_OUT" >/dev/null \
            || { tail -n 30 "$LOG/kube-controller-manager.log" >&2; die "kube-controller-manager exited"; }
    fi
    log "up: $(api_get /version | jq -r .gitVersion) on https://127.0.0.1:$PORT (state in $STATE)"
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
    local pid rss
    echo "state dir: $STATE"
    echo "binaries:  $BIN ($(cd "$BIN" 2>/dev/null && ls | tr '\n' ' '))"
    for spec in "etcd:$ETCD_PID:$ETCD_DATA" "kube-apiserver:$APISERVER_PID:$PKI/tokens.csv" \
                "kube-controller-manager:$KCM_PID:$KUBECONFIG_OUT"; do
        IFS=: read -r name file match <<<"$spec"
        if pid="$(live_pid "$file" "$match")"; then
            rss="$(awk '/^VmRSS/ {print $2 " " $3}' "/proc/$pid/status")"
            printf '%-24s running (pid %s, rss %s)\n' "$name:" "$pid" "$rss"
        else
            printf '%-24s stopped\n' "$name:"
        fi
    done
    if [[ -s "$TOKEN_FILE" ]] && live_pid "$APISERVER_PID" "$PKI/tokens.csv" >/dev/null; then
        echo "readyz:    $(api_get /readyz 2>&1 || true)"
        echo "version:   $(api_get /version 2>/dev/null | jq -r .gitVersion || true)"
    fi
}

cmd_env() {
    echo "export SLURM_MAINT_E2E_KUBECONFIG=$(printf '%q' "$KUBECONFIG_OUT")"
}

main() {
    case "${1:-}" in
        install) cmd_install ;;
        build) cmd_build ;;
        up) cmd_up ;;
        down) cmd_down ;;
        clean) cmd_clean ;;
        status) cmd_status ;;
        env) cmd_env ;;
        *) echo "usage: $0 install|build|up|down|clean|status|env" >&2; exit 2 ;;
    esac
}

# `exit` on the same line: bash never reads past it, so editing this file while
# a long `build` runs cannot make the running instance execute stray lines.
main "$@"; exit $?
