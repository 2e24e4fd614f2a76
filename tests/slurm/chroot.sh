#!/usr/bin/env bash
# Slurm 24.11 (Debian trixie) and 26.05 (Debian sid) test clusters in debootstrap chroots,
# beside the host's own 22.05 cluster (tests/slurm/cluster.sh). Run as root.
#
# Usage: tests/slurm/chroot.sh COMMAND VERSION [-- CMD...]
#
#   build VERSION          make the chroot (cached, reused while its recipe is unchanged)
#   up VERSION             build if needed, mount, run cluster.sh up inside; idempotent
#   down VERSION           cluster.sh down inside, end what still runs in the chroot, unmount
#   clean VERSION          down + remove the cluster's state and overlay (the cache stays)
#   status VERSION         mounts and cluster.sh status
#   env VERSION            `export ...` lines for the host: eval "$(tests/slurm/chroot.sh env 24.11)"
#   exec VERSION -- CMD..  run CMD inside the chroot with the cluster's environment
#   live VERSION -- CMD..  up, export env, run CMD on the host, down; exits with CMD's status
#   capture VERSION        tests/slurm/capture-fixtures.sh inside -> tests/fixtures/slurm-VERSION/
#   capture-topology VERSION  tests/slurm/capture-topology.sh inside -> slurm-VERSION/topology-*/
#
# VERSION: 24.11 (trixie) | 26.05 (sid); 22.05 means the host's own packages, for which
# up/down/env/status/live/capture call tests/slurm/cluster.sh directly (same interface).
#
# Layout (CACHE = $SLURM_MAINT_CACHE, default ~/.cache/slurm-maint):
#   CACHE/chroot-SUITE          the debootstrapped root, never written after it is built;
#                               rebuilt when the recipe below changes (stamp file inside)
#   CACHE/cluster-VERSION-ID/   one cluster per VERSION and checkout (ID: hash of the repo path):
#       root/    the chroot as the cluster sees it: an overlay over chroot-SUITE (writes go to
#                upper/), with /proc, /sys (rbind, for the cgroup fs slurmd 24.11+ wants), /dev
#                (rbind), a fresh tmpfs /run (nothing inside reaches the host's pid files or
#                systemd), the host's /etc/hosts (copied), and the repo (so target/ and the
#                agent binary; $CARGO_TARGET_DIR too when it is elsewhere) and state/
#                bind-mounted at the same paths
#       state/   SLURM_TEST_DIR of cluster.sh (slurm.conf, logs, munge, spool, knobs), also at
#                the same path inside the chroot, so host and chroot name files alike
#       bin/     wrappers for the host: scontrol, sinfo, squeue, sbatch, scancel, srun, slurmd,
#                ... run the chroot's commands; `agent-wrapper` runs any program inside (the
#                live tests put it in front of the agent: SLURM_MAINT_AGENT_WRAPPER)
# Ports: chosen free at `up` (slurmctld + one per slurmd), kept in state/ports while up.
#
# Knobs: SLURM_MAINT_CACHE, SLURM_NODES (6), DEBIAN_MIRROR (http://deb.debian.org/debian),
#        SLURM_UP_TIMEOUT (passed to cluster.sh; default here 60), SLURM_TOPOLOGY (passed to
#        cluster.sh: tree or block gives the cluster a topology.conf and node Features).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
CACHE="${SLURM_MAINT_CACHE:-${HOME:-/root}/.cache/slurm-maint}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
NODES="${SLURM_NODES:-6}"

# The chroot recipe. Any change here (or to build_chroot) changes the stamp -> rebuild.
PACKAGES=(slurm-wlm slurm-client slurmctld slurmd munge)
RECIPE_VERSION=1

log() { echo "chroot.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

# --- versions ---------------------------------------------------------------

suite_of() {
    case "$1" in
        24.11) echo trixie ;;
        26.05) echo sid ;;
        *) return 1 ;;
    esac
}

set_version() {
    VERSION="$1"
    SUITE="$(suite_of "$VERSION")" || die "unknown Slurm version '$VERSION' (24.11, 26.05; 22.05 is the host's)"
    BASE="$CACHE/chroot-$SUITE"
    local id
    id="$(printf '%s' "$REPO_ROOT" | sha1sum | cut -c1-8)"
    CL="$CACHE/cluster-$VERSION-$id"
    ROOT="$CL/root"
    STATE="$CL/state"
    BIN="$CL/bin"
    CONF="$STATE/slurm.conf"
}

# --- mounts -----------------------------------------------------------------

# Is $1 a mount point (exactly)?
is_mounted() { awk -v p="$1" '$5 == p { f = 1 } END { exit !f }' /proc/self/mountinfo; }

# Mount points at or below $1, deepest first.
mounts_under() {
    awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# --- building the chroot ----------------------------------------------------

stamp() {
    { echo "$SUITE"; echo "$MIRROR"; echo "$RECIPE_VERSION"; printf '%s\n' "${PACKAGES[@]}"
      declare -f build_chroot; } | sha256sum | cut -c1-16
}

chroot_fresh() { [[ -r "$BASE/etc/slurm-maint-chroot.stamp" && "$(cat "$BASE/etc/slurm-maint-chroot.stamp")" == "$(stamp)" ]]; }

# Overlays of clusters (any checkout) still using $BASE as their lower layer.
base_in_use() { grep -F "lowerdir=$BASE," /proc/self/mountinfo >/dev/null 2>&1 || grep -F "lowerdir=$BASE " /proc/self/mountinfo >/dev/null 2>&1; }

build_chroot() {
    local tmp="$BASE.new.$$" t0=$SECONDS
    [[ $(id -u) -eq 0 ]] || die "building a chroot needs root"
    command -v debootstrap >/dev/null || die "debootstrap not installed (apt-get install debootstrap)"
    base_in_use && die "$BASE is out of date but a cluster still uses it: run 'down' first"
    mkdir -p "$CACHE"
    log "building $SUITE chroot (slurm $VERSION) in $BASE"
    rm -rf --one-file-system "$BASE".new.*
    debootstrap --variant=minbase "$SUITE" "$tmp" "$MIRROR" > "$CACHE/debootstrap-$SUITE.log" 2>&1 \
        || { tail -n 30 "$CACHE/debootstrap-$SUITE.log" >&2; die "debootstrap $SUITE failed (log $CACHE/debootstrap-$SUITE.log)"; }
    log "debootstrap done after $((SECONDS - t0)) s"
    # sid's Release file can be past its Valid-Until
    echo 'Acquire::Check-Valid-Until "false";' > "$tmp/etc/apt/apt.conf.d/99slurm-maint"
    # no package may start a daemon while we install (it would be the host's network)
    printf '#!/bin/sh\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d"
    chmod 0755 "$tmp/usr/sbin/policy-rc.d"
    mount -t proc proc "$tmp/proc"
    local rc=0
    (
        export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin
        chroot "$tmp" apt-get update -q
        chroot "$tmp" apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
        chroot "$tmp" apt-get clean
    ) > "$CACHE/apt-$SUITE.log" 2>&1 || rc=$?
    umount "$tmp/proc"
    ((rc == 0)) || { tail -n 30 "$CACHE/apt-$SUITE.log" >&2; die "apt-get install in $SUITE failed (log $CACHE/apt-$SUITE.log)"; }
    local v
    v="$(chroot "$tmp" dpkg-query -W -f '${Version}' slurmctld)"
    [[ "$v" == "$VERSION".* ]] || die "$SUITE has slurmctld $v, not $VERSION.x: update suite_of in $0"
    # a minbase chroot has no /etc/hosts; `up` copies the host's each time
    mkdir -p "$tmp/run"
    stamp > "$tmp/etc/slurm-maint-chroot.stamp"
    echo "$v" > "$tmp/etc/slurm-maint-chroot.slurm-version"
    rm -rf --one-file-system "$BASE"
    mv "$tmp" "$BASE"
    log "built $SUITE chroot with slurm $v in $((SECONDS - t0)) s"
}

cmd_build() {
    if chroot_fresh; then
        log "$SUITE chroot up to date ($BASE, slurm $(cat "$BASE/etc/slurm-maint-chroot.slurm-version"))"
        return 0
    fi
    build_chroot
}

# --- mounting ---------------------------------------------------------------

mount_root() {
    local d
    mkdir -p "$CL/upper" "$CL/work" "$ROOT" "$STATE" "$BIN"
    if ! is_mounted "$ROOT"; then
        mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$CL/upper,workdir=$CL/work" "$ROOT"
        mount --make-private "$ROOT"
    fi
    is_mounted "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
    if ! is_mounted "$ROOT/sys"; then
        mount --rbind /sys "$ROOT/sys"
        mount --make-rslave "$ROOT/sys"
    fi
    if ! is_mounted "$ROOT/dev"; then
        mount --rbind /dev "$ROOT/dev"
        mount --make-rslave "$ROOT/dev"
    fi
    is_mounted "$ROOT/run" || mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$ROOT/run"
    local binds=("$REPO_ROOT" "$STATE")
    # the agent binary the live tests run must be visible inside: a target dir elsewhere too
    if [[ -n "${CARGO_TARGET_DIR:-}" && -d "$CARGO_TARGET_DIR" ]]; then
        d="$(cd "$CARGO_TARGET_DIR" && pwd)"
        [[ "$d" == "$REPO_ROOT" || "$d" == "$REPO_ROOT"/* ]] || binds+=("$d")
    fi
    for d in "${binds[@]}"; do
        mkdir -p "$ROOT$d"
        is_mounted "$ROOT$d" || mount --bind "$d" "$ROOT$d"
    done
    # munge (not root) must reach the state dir inside: open up its ancestors there (/root is 0700)
    d="$STATE"
    while [[ "$d" != / ]]; do
        d="$(dirname "$d")"
        [[ -d "$ROOT$d" ]] && chmod a+x "$ROOT$d"
    done
    cp /etc/hosts "$ROOT/etc/hosts"
}

# Processes whose root directory is the chroot (all started inside it, by us).
chroot_pids() {
    local p r
    for p in /proc/[0-9]*; do
        r="$(readlink "$p/root" 2>/dev/null)" || continue
        [[ "$r" == "$ROOT" ]] && echo "${p#/proc/}"
    done
    return 0
}

end_chroot_processes() {
    local pids i
    pids="$(chroot_pids)"
    [[ -n "$pids" ]] || return 0
    log "ending processes still running in the chroot: $(echo $pids)"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        [[ -n "$(chroot_pids)" ]] || return 0
        sleep 0.1
    done
    pids="$(chroot_pids)"
    log "still running after 5 s, SIGKILL: $(echo $pids)"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        [[ -n "$(chroot_pids)" ]] || return 0
        sleep 0.1
    done
}

unmount_root() {
    local m
    for m in $(mounts_under "$ROOT"); do
        umount "$m" 2>/dev/null || umount -R "$m" 2>/dev/null || true
    done
    if [[ -n "$(mounts_under "$ROOT")" ]]; then
        log "still mounted under $ROOT:"; mounts_under "$ROOT" >&2
        log "processes using it:"; chroot_pids >&2
        die "could not unmount $ROOT"
    fi
}

# --- running things inside ----------------------------------------------------

# Environment for commands in the chroot (cluster.sh knobs, the chroot's own PATH).
inner_env() {
    local ports
    ports="$(cat "$STATE/ports" 2>/dev/null || true)"
    echo env -u SLURM_MAINT_AGENT_WRAPPER PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        SLURM_TEST_DIR="$STATE" SLURM_CONF="$CONF" SLURM_NODES="$NODES" SLURM_TOPOLOGY="${SLURM_TOPOLOGY:-}" $ports
}

in_chroot() {
    # shellcheck disable=SC2046
    chroot "$ROOT" $(inner_env) "$@"
}

# Free TCP ports on the host (shared network): slurmctld and a run of NODES for slurmd.
pick_ports() {
    local used base p ok ctld
    used="$(ss -Htan 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }' | sort -un)"
    port_free() { ! grep -qx "$1" <<<"$used"; }
    for ((base = 20000 + RANDOM % 20000; ; base += NODES + 7)); do
        ((base + NODES + 1 < 60000)) || base=20000
        ok=1
        for ((p = base; p <= base + NODES + 1; p++)); do port_free "$p" || { ok=0; break; }; done
        ((ok)) && break
    done
    ctld=$base
    echo "SLURM_CTLD_PORT=$ctld SLURMD_BASE_PORT=$((base + 1))"   # slurmd i: base+1+i
}

write_wrappers() {
    local c
    mkdir -p "$BIN"
    # run a program inside the chroot, in the caller's directory when it exists there
    cat > "$BIN/agent-wrapper" <<EOF
#!/bin/sh
# Generated by tests/slurm/chroot.sh: runs "\$@" inside the Slurm $VERSION chroot $ROOT.
cwd="\$(pwd)"
exec chroot "$ROOT" /usr/bin/env -u SLURM_MAINT_AGENT_WRAPPER \\
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SLURM_CONF="$CONF" SLURM_TEST_DIR="$STATE" \\
    /bin/sh -c 'cd "\$0" 2>/dev/null || cd /; exec "\$@"' "\$cwd" "\$@"
EOF
    chmod 0755 "$BIN/agent-wrapper"
    for c in scontrol sinfo squeue sbatch scancel srun salloc sacct sprio sshare sstat sdiag slurmd slurmctld munge unmunge; do
        printf '#!/bin/sh\nexec "%s/agent-wrapper" %s "$@"\n' "$BIN" "$c" > "$BIN/$c"
        chmod 0755 "$BIN/$c"
    done
}

# --- commands -----------------------------------------------------------------

cmd_up() {
    local t0=$SECONDS
    cmd_build
    mount_root
    write_wrappers
    if [[ ! -s "$STATE/ports" ]] || ! in_chroot bash "$SCRIPT_DIR/cluster.sh" is-up 2>/dev/null; then
        pick_ports > "$STATE/ports"
    fi
    log "slurm $VERSION ports: $(cat "$STATE/ports")"
    in_chroot env SLURM_UP_TIMEOUT="${SLURM_UP_TIMEOUT:-60}" bash "$SCRIPT_DIR/cluster.sh" up
    log "slurm $VERSION cluster up in $((SECONDS - t0)) s; eval \"\$($0 env $VERSION)\""
}

cmd_down() {
    if is_mounted "$ROOT"; then
        if [[ -d "$ROOT$REPO_ROOT/tests" ]]; then
            in_chroot bash "$SCRIPT_DIR/cluster.sh" down || log "cluster.sh down failed"
        fi
        end_chroot_processes
        unmount_root
        log "slurm $VERSION cluster down, $ROOT unmounted (state kept in $STATE)"
    else
        log "slurm $VERSION: $ROOT not mounted, nothing to stop"
    fi
    rm -f "$STATE/ports"
}

cmd_clean() {
    cmd_down
    [[ -z "$(mounts_under "$CL")" ]] || die "something is still mounted under $CL"
    rm -rf --one-file-system "$CL"
    log "removed $CL"
}

cmd_status() {
    echo "chroot: $BASE ($(cat "$BASE/etc/slurm-maint-chroot.slurm-version" 2>/dev/null || echo 'not built'); $(chroot_fresh && echo up to date || echo stale))"
    echo "mounts under $ROOT:"; mounts_under "$ROOT" | sort | sed 's/^/  /'
    if is_mounted "$ROOT"; then
        echo "ports: $(cat "$STATE/ports" 2>/dev/null)"
        in_chroot bash "$SCRIPT_DIR/cluster.sh" status
    fi
}

cmd_env() {
    echo "export SLURM_CONF=$(printf '%q' "$CONF")"
    echo "export SLURM_TEST_DIR=$(printf '%q' "$STATE")"
    echo "export SLURM_MAINT_AGENT_WRAPPER=$(printf '%q' "$BIN/agent-wrapper")"
    echo "export SLURM_MAINT_SLURM_VERSION=$VERSION"
    echo "export PATH=$(printf '%q' "$BIN"):\$PATH"
}

cmd_exec() {
    is_mounted "$ROOT" || die "slurm $VERSION chroot not up (run: $0 up $VERSION)"
    in_chroot "$@"
}

cmd_live() {
    local rc=0
    cmd_up
    trap 'cmd_down' EXIT
    eval "$(cmd_env)"
    log "running on slurm $VERSION: $*"
    "$@" || rc=$?
    log "slurm $VERSION: '$*' exited $rc"
    return "$rc"
}

# cmd_capture [SCRIPT]: tests/slurm/SCRIPT (capture-fixtures.sh) inside, on a fresh cluster.
cmd_capture() {
    local script="${1:-capture-fixtures.sh}"
    cmd_build
    mount_root
    write_wrappers
    pick_ports > "$STATE/ports"
    local rc=0
    in_chroot env FIXTURE_DIR="$REPO_ROOT/tests/fixtures/slurm-$VERSION" SLURM_UP_TIMEOUT="${SLURM_UP_TIMEOUT:-60}" \
        bash "$SCRIPT_DIR/$script" || rc=$?
    cmd_down
    return "$rc"
}

# --- the host's own 22.05 -----------------------------------------------------

host_cmd() {
    local cmd="$1"; shift
    case "$cmd" in
        build) log "22.05 is the host's (Debian 12 packages): nothing to build" ;;
        up | down | clean | status) exec bash "$SCRIPT_DIR/cluster.sh" "$cmd" ;;
        env) bash "$SCRIPT_DIR/cluster.sh" env; echo "unset SLURM_MAINT_AGENT_WRAPPER"; echo "export SLURM_MAINT_SLURM_VERSION=22.05" ;;
        exec) exec env SLURM_TEST_DIR="${SLURM_TEST_DIR:-$REPO_ROOT/.slurm-test}" "$@" ;;
        live)
            local rc=0
            bash "$SCRIPT_DIR/cluster.sh" up
            trap 'bash "$SCRIPT_DIR/cluster.sh" down' EXIT
            eval "$(bash "$SCRIPT_DIR/cluster.sh" env)"
            unset SLURM_MAINT_AGENT_WRAPPER
            export SLURM_MAINT_SLURM_VERSION=22.05
            "$@" || rc=$?
            log "slurm 22.05: '$*' exited $rc"
            return "$rc" ;;
        capture) exec bash "$SCRIPT_DIR/capture-fixtures.sh" ;;
        capture-topology) exec bash "$SCRIPT_DIR/capture-topology.sh" ;;
        *) usage ;;
    esac
}

main() {
    local cmd="${1:-}" version="${2:-}"
    [[ -n "$cmd" && -n "$version" ]] || usage
    shift 2
    if [[ "${1:-}" == -- ]]; then shift; fi
    case "$cmd" in
        exec | live) (($# > 0)) || die "$cmd needs a command after --" ;;
        *) (($# == 0)) || usage ;;
    esac
    if [[ "$version" == 22.05 ]]; then host_cmd "$cmd" "$@"; return; fi
    [[ $(id -u) -eq 0 ]] || die "needs root (chroot, mounts)"
    set_version "$version"
    case "$cmd" in
        build) cmd_build ;;
        up) cmd_up ;;
        down) cmd_down ;;
        clean) cmd_clean ;;
        status) cmd_status ;;
        env) cmd_env ;;
        exec) cmd_exec "$@" ;;
        live) cmd_live "$@" ;;
        capture) cmd_capture ;;
        capture-topology) cmd_capture capture-topology.sh ;;
        *) usage ;;
    esac
}

main "$@"
