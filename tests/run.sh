#!/usr/bin/env bash
# The project's test command: installs what the tests need on a fresh Debian 12 machine,
# starts a real Slurm cluster and a real Kubernetes control plane on loopback, and runs
# every check CI runs.
#
# Every phase runs, whatever an earlier one did, and every test binary runs (cargo test
# --no-fail-fast): at the end the phases that failed are listed and the exit status is 1.
#
# The real-server phases run against tests/k8s/apiserver.sh: Kubernetes v1.34.9 from the
# shared prebuilt binaries (../shared/k8s-1.34), or, where that directory is absent, the
# 1.20.2 fallback built from Debian's source. With SLURM_MAINT_E2E_KUBECONFIG set on entry,
# they run against that cluster instead (kind, k3d, a cloud cluster) and none is started.
set -uo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

FAILED=()
TIMES=()
# phase NAME CMD...: run CMD (a shell function or a command) in a subshell with `set -e`,
# record its time and whether it failed; never stop the script.
phase() {
    local name="$1" t0=$SECONDS rc
    shift
    echo
    echo "== $name"
    (set -e; "$@")
    rc=$?
    TIMES+=("$(printf '%5ss  %s' $((SECONDS - t0)) "$name")")
    if [ "$rc" -ne 0 ]; then
        FAILED+=("$name (exit $rc)")
        echo "== FAILED: $name (exit $rc, $((SECONDS - t0)) s)"
    fi
    return 0
}

# phase_start NAME CMD...: run CMD as a phase in the background (its output kept apart);
# phase_end: wait for every background phase, print its output, record its time and
# whether it failed.
BACKGROUND=()
phase_start() {
    local name="$1" log
    shift
    log="$(mktemp)"
    echo
    echo "== $name (in the background; its output follows when it ends)"
    (t0=$(date +%s); (set -e; "$@") >"$log" 2>&1; echo "$? $(($(date +%s) - t0))" >"$log.rc") &
    BACKGROUND+=("$!|$name|$log")
}
phase_end() {
    local entry pid name log rc secs
    for entry in "${BACKGROUND[@]}"; do
        IFS='|' read -r pid name log <<<"$entry"
        wait "$pid"
        read -r rc secs <"$log.rc" || { rc=1; secs=0; }
        echo
        echo "== $name (ran in the background)"
        cat "$log"
        rm -f "$log" "$log.rc"
        TIMES+=("$(printf '%5ss  %s (background)' "$secs" "$name")")
        if [ "$rc" -ne 0 ]; then
            FAILED+=("$name (exit $rc)")
            echo "== FAILED: $name (exit $rc, $secs s)"
        fi
    done
    BACKGROUND=()
}

# --- what the tests need --------------------------------------------------------------

install_system_packages() {
    # Slurm 22.05 and munge from Debian; openssl for the TLS tests' certificates; curl, jq
    # and xz for tests/k8s (apiserver.sh installs the rest of its own needs); debootstrap for
    # the Slurm 24.11 / 26.05 chroots (tests/slurm/chroot.sh) and the images' Debian bases;
    # buildah and objcopy (binutils) for the images (tests/images/images.sh).
    local missing=() cmd
    for cmd in slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client munged:munge openssl:openssl \
        curl:curl jq:jq xz:xz-utils python3:python3 debootstrap:debootstrap buildah:buildah \
        objcopy:binutils; do
        command -v "${cmd%%:*}" >/dev/null 2>&1 || missing+=("${cmd##*:}")
    done
    if ! python3 -m pip --version >/dev/null 2>&1; then missing+=(python3-pip); fi
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]} slurm-wlm"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq slurm-wlm "${missing[@]}" >/dev/null
    fi
}

install_prometheus() {
    # Debian's Prometheus: promtool for the chart's alert rules, the server for the
    # end-to-end alert test (tests/alerts_live.rs). No recommends (node exporter).
    if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
        echo "installing prometheus"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    fi
    promtool --version | head -n 1
}

pip_install() {
    python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"
}

# has_modules MODULE...: installed? (found, not imported: importing the OCI SDK alone
# takes most of a minute on a loaded machine)
has_modules() {
    python3 -c 'import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in sys.argv[1:]) else 1)' "$@"
}

install_python_packages() {
    # The official OCI Python SDK, which tests/oci_sdk.rs drives against the OCI emulator.
    if ! has_modules oci; then
        echo "pip install oci"
        pip_install oci
    fi
    # The real Helm library (PyPI helm-sdkpy: Helm 4 as a shared library), Lua 5.1 for the
    # Argo CD health check, PyYAML: tests/chart/.
    if ! has_modules helm_sdkpy lupa yaml; then
        echo "pip install helm-sdkpy lupa pyyaml"
        pip_install --ignore-requires-python helm-sdkpy lupa pyyaml
    fi
    has_modules oci helm_sdkpy lupa yaml
}

# --- the clusters ----------------------------------------------------------------------

OWN_K8S=1
if [ -n "${SLURM_MAINT_E2E_KUBECONFIG:-}" ]; then
    OWN_K8S=0
    USER_KUBECONFIG=$SLURM_MAINT_E2E_KUBECONFIG
fi
unset SLURM_MAINT_E2E_KUBECONFIG   # the embedded-server phase must not see it

# the clusters' export lines, for the phases (each runs in a subshell of its own)
RUN_TMP=$(mktemp -d)
SLURM_ENV=$RUN_TMP/slurm.env
K8S_ENV=$RUN_TMP/k8s.env
cleanup() {
    [ "$OWN_K8S" = 1 ] && bash tests/k8s/apiserver.sh down >/dev/null 2>&1
    bash tests/slurm/cluster.sh down >/dev/null 2>&1
    local v
    for v in 24.11 26.05; do bash tests/slurm/chroot.sh down "$v" >/dev/null 2>&1; done
    rm -rf "$RUN_TMP"
    return 0
}
trap cleanup EXIT

slurm_up() {
    bash tests/slurm/cluster.sh up
    bash tests/slurm/cluster.sh env > "$SLURM_ENV.tmp"
    mv "$SLURM_ENV.tmp" "$SLURM_ENV"
}

k8s_up() {
    if [ "$OWN_K8S" = 0 ]; then
        echo "export SLURM_MAINT_E2E_KUBECONFIG=$(printf '%q' "$USER_KUBECONFIG")" > "$K8S_ENV"
        echo "using the cluster of SLURM_MAINT_E2E_KUBECONFIG=$USER_KUBECONFIG (none started)"
        return 0
    fi
    # A fresh server each run (K8S_FRESH wipes etcd data of a stopped one), so that Helm
    # meets a server without our CRDs.
    bash tests/k8s/apiserver.sh down
    K8S_FRESH=1 bash tests/k8s/apiserver.sh up > "$K8S_ENV.tmp"
    mv "$K8S_ENV.tmp" "$K8S_ENV"
}

# --- the suites ----------------------------------------------------------------------------


with_slurm() { [ -s "$SLURM_ENV" ] || { echo "no Slurm cluster (its phase failed)"; return 1; }; eval "$(cat "$SLURM_ENV")"; export SLURM_MAINT_LIVE=1; }
with_k8s() {
    [ -s "$K8S_ENV" ] || { echo "no Kubernetes API server (its phase failed)"; return 1; }
    eval "$(cat "$K8S_ENV")"
    export SLURM_MAINT_E2E_KUBECONFIG
}

embedded_suite() { with_slurm; cargo test --all-targets --no-fail-fast; }
# The fuzz targets (fuzz/, its own workspace), a few seconds each from the committed seeds;
# built once into a cache outside the clone (a release build of the whole crate).
fuzz_smoke() {
    (cd fuzz && cargo fmt --check)
    FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/slurm-maint/fuzz-target}" \
        bash fuzz/run.sh smoke "${FUZZ_SECONDS:-5}"
}
alert_rules() { with_k8s; bash tests/alerts/rules.sh test; }
k8s_smoke() { with_k8s; bash tests/k8s/smoke.sh; }
chart_check() { with_k8s; bash tests/chart/check.sh; }
# Slinky's and Soperator's charts at pinned commits (git clones cached in
# ~/.cache/slurm-maint/next-to) rendered with ours and tests/chart/next-to/*.yaml
next_to_check() { with_k8s; python3 tests/chart/next_to.py; }
manifests_check() { with_k8s; bash tests/k8s/manifests.sh; }
e2e_real() { with_k8s; cargo test --no-fail-fast --test e2e; }
conformance_real() { with_k8s; cargo test --no-fail-fast --lib apiserver::; }

# faults_on_slurm: faults_live on the host's 22.05 cluster (slurmctld, the agent,
# kube-apiserver and etcd stopped mid-campaign; a node hanging on its reboot). It stops the
# API server, so it runs alone, before anything else uses the server.
faults_on_slurm() { with_k8s; with_slurm; cargo test --no-fail-fast --test faults_live; }

# live_suites_on_slurm VERSION: the live test binaries against a real Slurm VERSION
# cluster and the real API server (SLURM_MAINT_E2E_KUBECONFIG). The three lines run at
# once (each its own cluster, ports and state; the suites mostly wait on Slurm's clock).
#   22.05: the host's cluster (tests/slurm/cluster.sh, started above); its slurm_live,
#          agent_live and agent_abuse already ran in the embedded-server phase, so
#          controller_live, oci_live, alerts_live (a real Prometheus) and blockers_live
#          (spec.blockers against a real Prometheus) run here; then topology_live and
#          topology_campaigns_live (Spread and WholeDomain campaigns, Slurm sampled every
#          second) with the cluster restarted on a topology/tree (SLURM_TOPOLOGY=tree), and
#          the cluster restarted as it was; then the real-clock bench (bench_live).
#   24.11 (trixie), 26.05 (sid): `tests/slurm/chroot.sh live VERSION -- CMD` brings that
#          cluster up in its chroot (built once, ~1 min, then cached in
#          ~/.cache/slurm-maint), exports its env (the agent and the Slurm commands the tests
#          run go into the chroot), runs every live binary (slurm_live, agent_live,
#          controller_live, oci_live) with --no-fail-fast and takes the cluster down; then
#          the same for topology_live and topology_campaigns_live on a topology/block
#          cluster (SLURM_TOPOLOGY=block).
live_suites_on_slurm() {
    local version="$1"
    with_k8s
    case "$version" in
        22.05)
            with_slurm
            local rc=0
            cargo test --no-fail-fast --test controller_live --test oci_live --test alerts_live \
                --test blockers_live || rc=$?
            # topology_live on the host's cluster with a topology/tree, then as it was
            (export SLURM_TOPOLOGY=tree; bash tests/slurm/cluster.sh up \
                && cargo test --no-fail-fast --test topology_live --test topology_campaigns_live) \
                || rc=$?
            bash tests/slurm/cluster.sh up || rc=$?
            return "$rc"
            ;;
        24.11 | 26.05)
            # its own cluster in a Debian chroot (trixie, sid; built once and cached), beside
            # the host's 22.05 one: up, env (agent and Slurm commands run inside), the live
            # binaries, down
            export SLURM_MAINT_LIVE=1
            local rc=0
            bash tests/slurm/chroot.sh live "$version" -- cargo test --no-fail-fast \
                --test slurm_live --test agent_live --test controller_live --test oci_live || rc=$?
            # topology_live on a cluster with a topology/block (chroot.sh live restarts it so)
            SLURM_TOPOLOGY=block bash tests/slurm/chroot.sh live "$version" -- cargo test \
                --no-fail-fast --test topology_live --test topology_campaigns_live || rc=$?
            return "$rc"
            ;;
        *)
            echo "no Slurm $version cluster is wired into tests/run.sh yet"
            return 1
            ;;
    esac
}
SLURM_VERSIONS=(22.05 24.11 26.05)

# The images of ./Dockerfile (tests/images/images.sh): the controller and one agent per
# Slurm line, built with buildah from debootstrapped Debian bases (cached in
# ~/.cache/slurm-maint) with the debug binary the test phases built copied in.
# The real-clock trace on the 22.05 cluster (src/bench/live.rs), jobs at a quarter of
# their length: the figures go to the log; the phase fails only if a campaign does not end.
# The binary the test phases built, run as it is: `cargo run` (dev profile) would relink it
# under the live suites running beside it, and their `cargo test` (test profile) relink it
# again under the bench.
bench_live() {
    with_k8s
    with_slurm
    "${CARGO_TARGET_DIR:-target}/debug/slurm-maint" bench live --nodes 4 --scale 0.25
}
images_build() { bash tests/images/images.sh build; }
# images_on_slurm VERSION: the chart installed on the real API server, its agent pod (agent +
# munged sidecar) run from the VERSION agent image against that Slurm cluster (snapshot,
# reboot), its controller pod from the controller image with the chart's ServiceAccount
# token, a monitor-only policy Ready (tests/images/pods.py).
images_on_slurm() {
    local version="$1"
    with_k8s
    case "$version" in
        22.05) with_slurm; bash tests/images/images.sh run 22.05 ;;
        *) bash tests/slurm/chroot.sh live "$version" -- bash tests/images/images.sh run "$version" ;;
    esac
}

phase "install: system packages" install_system_packages
phase "install: Python packages (oci, helm-sdkpy, lupa, PyYAML)" install_python_packages
phase "install: Prometheus and promtool (Debian)" install_prometheus
phase "format" cargo fmt --check
phase "lints" cargo clippy --all-targets -- -D warnings
phase "fuzz smoke: every cargo-fuzz target ${FUZZ_SECONDS:-5} s (fuzz/run.sh)" fuzz_smoke
phase "real Slurm 22.05 cluster" slurm_up
phase "tests (embedded API server)" embedded_suite
phase "Kubernetes API server (tests/k8s/apiserver.sh)" k8s_up
if [ -s "$K8S_ENV" ]; then
    K8S_NAME="$( (eval "$(cat "$K8S_ENV")"; "${SLURM_MAINT_KUBECTL:-kubectl}" --kubeconfig "$SLURM_MAINT_E2E_KUBECONFIG" version -o json 2>/dev/null) \
        | python3 -c 'import json,sys; print("Kubernetes " + json.load(sys.stdin)["serverVersion"]["gitVersion"])' 2>/dev/null || echo "the real server")"
else
    K8S_NAME="the real server"
fi
echo "== real-server phases run against $K8S_NAME"
# the chart first: Helm meets a server without our CRDs and creates them
phase "Helm chart, RBAC, TokenRequest on $K8S_NAME (tests/chart/check.sh)" chart_check
phase "Helm: the agent as a sidecar next to Slinky and Soperator on $K8S_NAME (tests/chart/next_to.py)" next_to_check
phase "alert rules: rendered from the chart, promtool test rules (tests/alerts/rules.sh)" alert_rules
phase "smoke: $K8S_NAME facts (tests/k8s/smoke.sh)" k8s_smoke
phase "CRDs and manifests/ applied to $K8S_NAME (tests/k8s/manifests.sh)" manifests_check
phase "API server conformance against $K8S_NAME (--lib apiserver::)" conformance_real
phase "faults on Slurm 22.05 against $K8S_NAME (tests/faults_live.rs)" faults_on_slurm
# Then what mostly waits runs at once: the e2e suite (on the server), 24.11's and 26.05's
# live suites (their chroots' clusters) in the background, 22.05's and the bench (the
# host's cluster) in front; the images build beside them.
phase_start "e2e against $K8S_NAME" e2e_real
for v in "${SLURM_VERSIONS[@]:1}"; do
    phase_start "live suites on Slurm $v against $K8S_NAME" live_suites_on_slurm "$v"
done
phase "live suites on Slurm 22.05 against $K8S_NAME" live_suites_on_slurm 22.05
phase "bench live: the real-clock trace on Slurm 22.05 against $K8S_NAME (×0.25)" bench_live
phase "images: build controller + agents (./Dockerfile, buildah)" images_build
phase_end
for v in "${SLURM_VERSIONS[@]}"; do
    phase "images: the chart's pods on Slurm $v against $K8S_NAME (tests/images/)" images_on_slurm "$v"
done

cleanup
echo
echo "== time per phase"
printf '%s\n' "${TIMES[@]}"
echo "wall time: ${SECONDS} s (background phases overlap the others)"
echo
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "== ${#FAILED[@]} phase(s) failed:"
    printf '  - %s\n' "${FAILED[@]}"
fi
echo "phases: $((${#TIMES[@]} - ${#FAILED[@]})) passed, ${#FAILED[@]} failed"
[ ${#FAILED[@]} -eq 0 ]
