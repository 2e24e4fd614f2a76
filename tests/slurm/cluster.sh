#!/usr/bin/env bash
# Bring up / tear down a real single-host Slurm test cluster (Debian packages): 22.05 on
# the Debian 12 host; 24.11 and 26.05 run this same script inside the chroots of
# tests/slurm/chroot.sh (which passes its own SLURM_TEST_DIR and ports).
#
# Usage: tests/slurm/cluster.sh up|down|clean|status|env
#
#   up      install packages if missing, start munged, slurmctld and N slurmd
#           (node1..nodeN), wait until every node is IDLE. Idempotent.
#   down    stop everything started by `up` via pid files (state dir is kept)
#   clean   down + empty the state dir
#   status  show daemon pids and sinfo
#   env     print `export ...` lines; use: eval "$(tests/slurm/cluster.sh env)"
#   is-up   exit 0 when munged, slurmctld and every slurmd run (by their pid files)
#
# Environment knobs:
#   SLURM_NODES        number of compute nodes (default 6)
#   SLURM_TEST_DIR     state dir (default <repo root>/.slurm-test, gitignored)
#   SLURM_CTLD_PORT    slurmctld port (default 6817)
#   SLURMD_BASE_PORT   node i listens on SLURMD_BASE_PORT+i (default 6900)
#   SLURM_UP_TIMEOUT   seconds to wait for nodes to become IDLE (default 30)
#   SLURM_KEEP_STATE=1 do not clear slurmctld saved state on start (default: clear, -c)
#   SLURM_TOPOLOGY     unset/empty: no topology (as always); `tree` or `block` (23.11+): a
#                      topology.conf of domains of 2 nodes (node1-2, node3-4, ...): tree has
#                      leaf switches leaf1..leafK under one switch `spine`, block has blocks
#                      block1..blockK (BlockSizes=2); either way nodes get Features=rack-X
#                      (rack-a for node1-2, rack-b for node3-4, ...). A running cluster of
#                      another topology is stopped and started again by `up`.
#
# Fake reboots: RebootProgram is tests/slurm/fake-reboot.sh; see that file for the
# hang/noboot knobs ($SLURM_TEST_DIR/hang/<node>, $SLURM_TEST_DIR/noboot/<node>).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
STATE="${SLURM_TEST_DIR:-$REPO_ROOT/.slurm-test}"
NODES="${SLURM_NODES:-6}"
CTLD_PORT="${SLURM_CTLD_PORT:-6817}"
BASE_PORT="${SLURMD_BASE_PORT:-6900}"
UP_TIMEOUT="${SLURM_UP_TIMEOUT:-30}"
TOPOLOGY="${SLURM_TOPOLOGY:-}"
case "$TOPOLOGY" in
    "" | tree | block) ;;
    *) echo "cluster.sh: ERROR: SLURM_TOPOLOGY must be tree, block or empty, not '$TOPOLOGY'" >&2; exit 2 ;;
esac

CONF="$STATE/slurm.conf"
RUN="$STATE/run"
LOG="$STATE/log"
MUNGE_DIR="$STATE/munge"
MUNGE_SOCK="$MUNGE_DIR/munge.socket"
MUNGE_PID="$MUNGE_DIR/munged.pid"
CTLD_PID="$RUN/slurmctld.pid"

log() { echo "cluster.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

node_names() { local i; for ((i = 1; i <= NODES; i++)); do echo "node$i"; done; }

# --- pid helpers -----------------------------------------------------------

# Print the command line of process $1 (NULs as spaces); fails quietly when it is gone
# (it can exit between any check and the read, so the redirection is silenced too).
cmdline_of() { { tr '\0' ' ' < "/proc/$1/cmdline"; } 2>/dev/null; }

# Print the pid in pid file $1 if that process is alive and its cmdline contains $2.
live_pid() {
    local file="$1" match="$2" pid
    [[ -r "$file" ]] || return 1
    pid="$(tr -dc '0-9' < "$file")"
    [[ -n "$pid" ]] || return 1
    cmdline_of "$pid" | grep -qF -- "$match" || return 1
    echo "$pid"
}

# stop_pid NAME PID: SIGTERM, wait up to 10 s, then SIGKILL.
stop_pid() {
    local name="$1" pid="$2" i
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        [[ -d "/proc/$pid" ]] || return 0
        # a zombie child of ours counts as gone
        [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && return 0
        sleep 0.1
    done
    log "$name (pid $pid) did not exit after 10 s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
}

# Job processes survive a stopped slurmd (by design). Find the ones belonging to
# THIS cluster: slurmstepd whose cwd is inside the state dir, and job scripts
# run from "$STATE/spool/" (their process group holds the job's children).
sweep_job_processes() {
    local p cwd args pids=() groups=()
    for p in /proc/[0-9]*; do
        p="${p#/proc/}"
        [[ "$p" != "$$" ]] || continue
        args="$(cmdline_of "$p")" || continue
        cwd="$(readlink "/proc/$p/cwd" 2>/dev/null)" || cwd=""
        cwd="${cwd% (deleted)}"
        if [[ "$args" == slurmstepd:* && ( "$cwd" == "$STATE" || "$cwd" == "$STATE"/* ) ]]; then
            pids+=("$p")
        elif [[ "$args" == *"$STATE/spool/"*/job[0-9]*/slurm_script* ]]; then
            groups+=("$(awk '{sub(/.*\) /, ""); print $3}' "/proc/$p/stat" 2>/dev/null)")
        fi
    done
    local g
    for g in "${groups[@]}"; do
        [[ -n "$g" && "$g" -gt 1 ]] || continue
        log "killing leftover job process group $g"
        kill -KILL -- "-$g" 2>/dev/null || true
    done
    # slurmstepd ignores SIGTERM
    for p in "${pids[@]}"; do
        log "killing leftover slurmstepd (pid $p)"
        kill -KILL "$p" 2>/dev/null || true
    done
}

# Cancel all jobs while slurmctld/slurmd still run, so steps end cleanly.
cancel_all_jobs() {
    live_pid "$CTLD_PID" "$CONF" >/dev/null || return 0
    local ids i
    ids="$(SLURM_CONF="$CONF" squeue -h -o %i 2>/dev/null)" || return 0
    [[ -n "$ids" ]] || return 0
    log "cancelling jobs: $(echo $ids)"
    # shellcheck disable=SC2086
    SLURM_CONF="$CONF" scancel $ids 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        [[ -z "$(SLURM_CONF="$CONF" squeue -h -t R,CG,S -o %i 2>/dev/null)" ]] && break
        sleep 0.2
    done
}

# --- installation / host preparation --------------------------------------

ensure_installed() {
    local missing=0 b
    for b in slurmctld slurmd sinfo squeue scontrol sbatch munged munge unmunge; do
        command -v "$b" >/dev/null 2>&1 || missing=1
    done
    [[ -x /usr/sbin/slurmctld && -x /usr/sbin/slurmd && -x /usr/sbin/munged ]] || missing=1
    if ((missing)); then
        [[ $(id -u) -eq 0 ]] || die "slurm/munge not installed and not root"
        log "installing slurm-wlm and munge from Debian"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q slurm-wlm slurmctld slurmd slurm-client munge
    fi
    export PATH="/usr/sbin:/sbin:$PATH"
    id munge >/dev/null 2>&1 || die "user 'munge' missing after install"
}

# The Debian packages may start their own daemons (with systemd) which would
# hold port 6817 and the default munge socket. Stop them via systemctl or their
# own pid files, never by process name.
stop_packaged_daemons() {
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        systemctl stop slurmctld slurmd munge 2>/dev/null || true
    fi
    local f pid
    for f in /run/slurmctld.pid /var/run/slurmctld.pid /run/slurmd.pid /var/run/slurmd.pid \
             /run/munge/munged.pid /var/run/munge/munged.pid; do
        [[ -r "$f" ]] || continue
        pid="$(tr -dc '0-9' < "$f")"
        [[ -n "$pid" && -d "/proc/$pid" ]] || continue
        case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
            slurmctld | slurmd | munged)
                # only the packaged instances (not using our state dir)
                if ! cmdline_of "$pid" | grep -qF -- "$STATE"; then
                    stop_pid "packaged $(cat "/proc/$pid/comm")" "$pid"
                fi ;;
        esac
    done
}

# --- config ----------------------------------------------------------------

# slurm_at_least MAJOR MINOR: is the installed slurmd at least that release? (`slurmd -V`
# prints e.g. "slurm 24.11.5")
slurm_at_least() {
    local v maj min
    v="$(slurmd -V 2>/dev/null | awk '{print $2}')"
    IFS=. read -r maj min _ <<<"$v"
    [[ -n "$maj" && -n "$min" ]] || die "cannot tell the Slurm version from 'slurmd -V' ($v)"
    ((10#$maj > $1 || (10#$maj == $1 && 10#$min >= $2)))
}

# --- topology (SLURM_TOPOLOGY) ------------------------------------------------

# Domains of 2 nodes: domain d (from 1) holds node 2d-1 and node 2d (the last may have one).
domains() { echo $(((NODES + 1) / 2)); }
domain_nodes() {
    local a=$((2 * $1 - 1)) b=$((2 * $1))
    if ((b <= NODES)); then echo "node[$a-$b]"; else echo "node$a"; fi
}
rack_of_node() { local l=abcdefghijklmnopqrstuvwxyz; echo "rack-${l:$((($1 - 1) / 2)):1}"; }

# topology.conf for SLURM_TOPOLOGY (none without one).
write_topology() {
    local d k
    rm -f "$STATE/topology.conf"
    [[ -n "$TOPOLOGY" ]] || return 0
    k="$(domains)"
    {
        echo "# Generated by tests/slurm/cluster.sh (SLURM_TOPOLOGY=$TOPOLOGY)"
        case "$TOPOLOGY" in
            tree)
                for ((d = 1; d <= k; d++)); do echo "SwitchName=leaf$d Nodes=$(domain_nodes "$d")"; done
                echo "SwitchName=spine Switches=leaf[1-$k]" ;;
            block)
                for ((d = 1; d <= k; d++)); do echo "BlockName=block$d Nodes=$(domain_nodes "$d")"; done
                echo "BlockSizes=2" ;;
        esac
    } > "$STATE/topology.conf"
}

write_conf() {
    local nodes_csv last2 i features
    if [[ "$TOPOLOGY" == block ]] && ! slurm_at_least 23 11; then
        die "SLURM_TOPOLOGY=block needs Slurm 23.11+ (topology/block)"
    fi
    nodes_csv="$(node_names | paste -sd, -)"
    mkdir -p "$STATE"/{run,log,spool,ctld,hang,noboot}
    {
        cat <<EOF
# Generated by tests/slurm/cluster.sh -- single-host Slurm test cluster.
ClusterName=slurmmaint
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmctldPidFile=$CTLD_PID
SlurmctldLogFile=$LOG/slurmctld.log
SlurmctldDebug=info
SlurmdSpoolDir=$STATE/spool/%n
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmdLogFile=$LOG/slurmd-%n.log
SlurmdDebug=info
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
PreemptType=preempt/partition_prio
PreemptMode=CANCEL
ReturnToService=2
RebootProgram=$SCRIPT_DIR/fake-reboot.sh
ResumeTimeout=60
SlurmdTimeout=30
SlurmctldTimeout=30
MinJobAge=30
KillWait=5
InactiveLimit=0
Waittime=0
MailProg=/bin/true
EOF
        [[ -z "$TOPOLOGY" ]] || echo "TopologyPlugin=topology/$TOPOLOGY"
        for ((i = 1; i <= NODES; i++)); do
            features=""
            [[ -z "$TOPOLOGY" ]] || features=" Features=$(rack_of_node "$i")"
            echo "NodeName=node$i NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((BASE_PORT + i)) CPUs=2 RealMemory=1000$features State=UNKNOWN"
        done
        echo "PartitionName=batch Nodes=$nodes_csv Default=YES MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF"
        echo "PartitionName=scavenger Nodes=$nodes_csv MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=CANCEL"
        if ((NODES >= 2)); then
            last2="node$((NODES - 1)),node$NODES"
            echo "PartitionName=debug Nodes=$last2 MaxTime=30:00 DefaultTime=10:00 State=UP PriorityTier=10 PreemptMode=OFF"
        fi
    } > "$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
    write_topology
    echo "$TOPOLOGY" > "$STATE/topology-mode"
    # slurmd 24.11+ loads a cgroup plugin even with proctrack/linuxproc and task/none, and
    # refuses to start where no cgroup fs is mounted ("No filesystem mounted on
    # /sys/fs/cgroup ... slurmd initialization failed"); disabled, it neither needs one nor
    # touches the host's. (22.05 reads no cgroup.conf with these plugins.)
    rm -f "$STATE/cgroup.conf"
    if slurm_at_least 24 5; then
        echo "# Generated by tests/slurm/cluster.sh" > "$STATE/cgroup.conf"
        echo "CgroupPlugin=disabled" >> "$STATE/cgroup.conf"
    fi
    for n in $(node_names); do mkdir -p "$STATE/spool/$n"; done
}

# --- munge -----------------------------------------------------------------

start_munge() {
    if pid="$(live_pid "$MUNGE_PID" "$MUNGE_SOCK")"; then
        log "munged already running (pid $pid)"
        return 0
    fi
    runuser -u munge -- test -x "$STATE" \
        || die "state dir $STATE is not traversable by user munge (check parent dir permissions)"
    mkdir -p "$MUNGE_DIR"
    chown munge:munge "$MUNGE_DIR"
    chmod 0755 "$MUNGE_DIR"
    if [[ ! -s "$MUNGE_DIR/munge.key" ]]; then
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$MUNGE_DIR/munge.key" --force
        else
            dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge "$MUNGE_DIR/munge.key"
    chmod 0400 "$MUNGE_DIR/munge.key"
    rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
    runuser -u munge -- munged \
        --socket="$MUNGE_SOCK" \
        --key-file="$MUNGE_DIR/munge.key" \
        --pid-file="$MUNGE_PID" \
        --log-file="$MUNGE_DIR/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed" \
        || { cat "$MUNGE_DIR/munged.log" >&2 2>/dev/null || true; die "munged failed to start"; }
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -S "$MUNGE_SOCK" ]] && break
        sleep 0.1
    done
    munge -S "$MUNGE_SOCK" -n | unmunge -S "$MUNGE_SOCK" >/dev/null \
        || { cat "$MUNGE_DIR/munged.log" >&2 || true; die "munge self-test failed"; }
    log "munged up (socket $MUNGE_SOCK)"
}

# --- slurm daemons ---------------------------------------------------------

start_slurmctld() {
    if pid="$(live_pid "$CTLD_PID" "$CONF")"; then
        log "slurmctld already running (pid $pid)"
        return 0
    fi
    local args=(-f "$CONF")
    [[ "${SLURM_KEEP_STATE:-0}" == 1 ]] || args+=(-c)
    SLURM_CONF="$CONF" slurmctld "${args[@]}" \
        || { tail -n 50 "$LOG/slurmctld.log" >&2 || true; die "slurmctld failed to start"; }
}

start_slurmd() {
    local n="$1" pid
    if pid="$(live_pid "$RUN/slurmd-$n.pid" "$CONF")"; then
        return 0
    fi
    SLURM_CONF="$CONF" SLURM_TEST_DIR="$STATE" slurmd -N "$n" -f "$CONF" \
        || { tail -n 50 "$LOG/slurmd-$n.log" >&2 || true; die "slurmd $n failed to start"; }
}

all_up() {
    live_pid "$MUNGE_PID" "$MUNGE_SOCK" >/dev/null || return 1
    live_pid "$CTLD_PID" "$CONF" >/dev/null || return 1
    local n
    for n in $(node_names); do
        live_pid "$RUN/slurmd-$n.pid" "$CONF" >/dev/null || return 1
    done
}

wait_idle() {
    local deadline=$((SECONDS + UP_TIMEOUT)) out
    while ((SECONDS < deadline)); do
        if out="$(SLURM_CONF="$CONF" sinfo -h -N -o '%N %T' 2>/dev/null)" && [[ -n "$out" ]]; then
            # each node is listed once per partition; all must be idle
            if ! grep -vq ' idle$' <<<"$out" \
               && (($(awk '{print $1}' <<<"$out" | sort -u | wc -l) == NODES)); then
                return 0
            fi
        fi
        sleep 0.3
    done
    log "nodes did not become IDLE within ${UP_TIMEOUT}s"
    SLURM_CONF="$CONF" sinfo -N -l >&2 || true
    local f
    for f in "$LOG"/slurmctld.log "$LOG"/slurmd-*.log "$MUNGE_DIR/munged.log"; do
        [[ -r "$f" ]] || continue
        echo "===== $f (last 30 lines) =====" >&2
        tail -n 30 "$f" >&2
    done
    return 1
}

cmd_up() {
    ensure_installed
    export PATH="/usr/sbin:/sbin:$PATH"
    if all_up && [[ "$(cat "$STATE/topology-mode" 2>/dev/null)" != "$TOPOLOGY" ]]; then
        log "cluster runs with topology '$(cat "$STATE/topology-mode" 2>/dev/null)', asked for '$TOPOLOGY': restarting it"
        cmd_down
    fi
    if all_up; then
        log "cluster already up ($NODES nodes, SLURM_CONF=$CONF)"
        return 0
    fi
    rm -f "$RUN/stopping"
    stop_packaged_daemons
    if ! live_pid "$CTLD_PID" "$CONF" >/dev/null; then
        sweep_job_processes
        # fresh start: forget fake-reboot knobs left by earlier runs
        rm -f "$STATE"/hang/* "$STATE"/noboot/* "$STATE/reboot-delay" 2>/dev/null || true
        write_conf
    fi
    start_munge
    start_slurmctld
    local n
    for n in $(node_names); do start_slurmd "$n"; done
    if ! wait_idle; then
        die "cluster did not come up"
    fi
    log "cluster up: $NODES nodes IDLE; eval \"\$($0 env)\""
}

cmd_down() {
    export PATH="/usr/sbin:/sbin:$PATH"
    [[ -d "$STATE" ]] || { log "no state dir $STATE, nothing to stop"; return 0; }
    mkdir -p "$RUN"
    # tells pending fake reboots not to restart slurmd
    touch "$RUN/stopping"
    cancel_all_jobs
    local f pid n
    # pending fake-reboot helpers first, so they cannot restart a slurmd
    for f in "$RUN"/reboot-*.pid; do
        [[ -e "$f" ]] || continue
        if pid="$(live_pid "$f" fake-reboot.sh)"; then
            stop_pid "fake-reboot helper $(basename "$f" .pid)" "$pid"
        fi
        rm -f "$f"
    done
    for f in "$RUN"/slurmd-*.pid; do
        [[ -e "$f" ]] || continue
        n="$(basename "$f" .pid)"
        if pid="$(live_pid "$f" "$CONF")"; then
            stop_pid "$n" "$pid"
        fi
        rm -f "$f"
    done
    if pid="$(live_pid "$CTLD_PID" "$CONF")"; then
        stop_pid slurmctld "$pid"
    fi
    rm -f "$CTLD_PID"
    sweep_job_processes
    if pid="$(live_pid "$MUNGE_PID" "$MUNGE_SOCK")"; then
        stop_pid munged "$pid"
    fi
    rm -f "$MUNGE_PID"
    log "cluster down (state kept in $STATE)"
}

cmd_clean() {
    cmd_down
    case "$STATE" in
        "" | / | "$HOME" | "$REPO_ROOT") die "refusing to remove $STATE" ;;
    esac
    # its contents: the dir itself may be a mount point (chroot.sh bind-mounts it)
    find "$STATE" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    log "emptied $STATE"
}

cmd_status() {
    export PATH="/usr/sbin:/sbin:$PATH"
    local pid n
    echo "state dir: $STATE"
    if pid="$(live_pid "$MUNGE_PID" "$MUNGE_SOCK")"; then echo "munged:    running (pid $pid)"; else echo "munged:    stopped"; fi
    if pid="$(live_pid "$CTLD_PID" "$CONF")"; then echo "slurmctld: running (pid $pid)"; else echo "slurmctld: stopped"; fi
    for n in $(node_names); do
        if pid="$(live_pid "$RUN/slurmd-$n.pid" "$CONF")"; then
            echo "slurmd $n: running (pid $pid)"
        else
            echo "slurmd $n: stopped"
        fi
    done
    if live_pid "$CTLD_PID" "$CONF" >/dev/null; then
        SLURM_CONF="$CONF" sinfo
        SLURM_CONF="$CONF" sinfo -N -o '%N %P %T %E'
    fi
}

cmd_env() {
    echo "export SLURM_CONF=$(printf '%q' "$CONF")"
    echo "export SLURM_TEST_DIR=$(printf '%q' "$STATE")"
    echo "export PATH=/usr/sbin:\$PATH"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    clean) cmd_clean ;;
    status) cmd_status ;;
    env) cmd_env ;;
    is-up) all_up ;;
    *) echo "usage: $0 up|down|clean|status|env|is-up" >&2; exit 2 ;;
esac
