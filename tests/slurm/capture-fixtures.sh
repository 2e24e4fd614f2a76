#!/usr/bin/env bash
# Re-create tests/fixtures/slurm-22.05/ from a real single-host cluster.
# Takes ~3-4 minutes. Wipes and recreates the cluster state dir (cluster.sh clean)
# so job ids start at 1, and leaves the cluster DOWN at the end.
# Needs exactly 6 nodes (the default).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
OUT="${FIXTURE_DIR:-$REPO_ROOT/tests/fixtures/slurm-22.05}"
CLUSTER="$SCRIPT_DIR/cluster.sh"
export SLURM_NODES=6

trap '"$CLUSTER" down' EXIT
"$CLUSTER" clean
"$CLUSTER" up
eval "$("$CLUSTER" env)"
STATE="$SLURM_TEST_DIR"

say() { echo "capture: $(date +%T) $*" >&2; }

# run CMD..., store stdout in $dir/$name, plus $name.stderr / $name.exitcode when not clean
cap() {
    local dir="$1" name="$2"; shift 2
    local rc=0
    "$@" > "$dir/$name" 2> "$dir/$name.stderr" || rc=$?
    [[ -s "$dir/$name.stderr" ]] || rm -f "$dir/$name.stderr"
    if ((rc != 0)); then echo "$rc" > "$dir/$name.exitcode"; fi
}

snap() {
    local dir="$OUT/$1"
    rm -rf "$dir"; mkdir -p "$dir"
    say "snapshot $1"
    cap "$dir" sinfo-N-long-state.txt sinfo -N -h -o '%N|%T|%E'
    cap "$dir" sinfo-N-short-state.txt sinfo -N -h -o '%N %t'
    cap "$dir" scontrol-show-node.txt scontrol show node -o
    cap "$dir" scontrol-show-job.txt scontrol show job -o
    cap "$dir" scontrol-show-reservation.txt scontrol show reservation -o
    cap "$dir" scontrol-show-partition.txt scontrol show partition -o
    cap "$dir" sinfo.json sinfo --json
    cap "$dir" squeue.json squeue --json
    date -u '+%FT%TZ' > "$dir/captured-at.txt"
}

# wait_for DESCRIPTION TIMEOUT CMD...: poll CMD (0.5 s) until it succeeds
wait_for() {
    local what="$1" timeout="$2"; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            say "timeout waiting for: $what"
            sinfo -N -o '%N %P %T %E' >&2; squeue >&2
            exit 1
        fi
        sleep 0.5
    done
    say "reached: $what"
}

node_state() { scontrol show node "$1" -o | grep -o 'State=[^ ]*' | cut -d= -f2; }
node_state_is() { [[ "$(node_state "$1")" == "$2" ]]; }
node_state_has() { [[ "$(node_state "$1")" == *"$2"* ]]; }
job_state_is() { [[ "$(squeue -h -j "$1" -o %T 2>/dev/null)" == "$2" ]]; }
job_state_any() { scontrol show job "$1" -o 2>/dev/null | grep -q "JobState=$2 "; }

sub() { sbatch --parsable --chdir=/tmp -o /dev/null -e /dev/null "$@"; }

mkdir -p "$OUT"
cp "$SLURM_CONF" "$OUT/slurm.conf"
{ echo "date +%Z: $(date +%Z)"; echo "TZ=${TZ-<unset>}"; echo "/etc/timezone: $(cat /etc/timezone 2>/dev/null || echo '<none>')"; } > "$OUT/host-timezone.txt"

# --- 01: idle cluster, nothing scheduled --------------------------------------
snap 01-idle

# --- error outputs --------------------------------------------------------------
ERR="$OUT/errors"; rm -rf "$ERR"; mkdir -p "$ERR"
cap "$ERR" scontrol-reboot-bad-node.txt scontrol reboot ASAP nextstate=RESUME reason=test nosuchnode
cap "$ERR" scontrol-delete-reservation-doesnotexist.txt scontrol delete reservation=doesnotexist
cap "$ERR" scontrol-show-node-bad-node.txt scontrol show node nosuchnode -o
cap "$ERR" scontrol-show-reservation-doesnotexist.txt scontrol show reservation doesnotexist -o
cap "$ERR" scontrol-show-job-no-jobs.txt scontrol show job -o

# --- 02: jobs, reservations, drained node --------------------------------------
J_LIMITED=$(sub -J limited -p batch -w node1 -c 1 -t 30 --wrap 'sleep 3000')
J_UNLIMITED=$(sub -J unlimited -p batch -w node2 -c 2 -t UNLIMITED --wrap 'sleep 3000')
J_MULTI=$(sub -J multinode -p batch -N 2 -w node3,node4 -c 1 --wrap 'sleep 3000')
J_SCAV=$(sub -J scavenge -p scavenger -w node3 -c 1 -t 2:00:00 --wrap 'sleep 3000')
J_PENDING=$(sub -J pending -p batch -w node1 -c 2 -t 10 --wrap 'sleep 60')
say "jobs: limited=$J_LIMITED unlimited=$J_UNLIMITED multi=$J_MULTI scav=$J_SCAV pending=$J_PENDING"
wait_for "jobs running" 60 bash -c "[[ \$(squeue -h -t R -o %i | wc -l) -eq 4 ]]"
scontrol update nodename=node5 state=drain reason="disk failure on sda"
scontrol create reservation reservationname=maint_node6 starttime=now duration=180 nodes=node6 flags=MAINT users=root
scontrol create reservation reservationname=future_maint starttime=now+2days duration=4:00:00 nodes=node3,node4 flags=MAINT,IGNORE_JOBS users=root
if ! scontrol create reservation reservationname=acct_resv starttime=now+7days duration=1-00:00:00 nodes=node1 accounts=physics,chemistry 2> "$ERR/scontrol-create-reservation-accounts.txt.stderr"; then
    say "reservation with accounts failed: $(cat "$ERR/scontrol-create-reservation-accounts.txt.stderr")"
else
    rm -f "$ERR/scontrol-create-reservation-accounts.txt.stderr"
fi
wait_for "job $J_PENDING pending" 10 job_state_is "$J_PENDING" PENDING
wait_for "node6 IDLE+MAINTENANCE+RESERVED" 20 node_state_is node6 IDLE+MAINTENANCE+RESERVED
wait_for "node5 IDLE+DRAIN" 10 node_state_is node5 IDLE+DRAIN
wait_for "node1 MIXED" 10 node_state_is node1 MIXED
# reservation over a node whose job (TimeLimit=UNLIMITED) would overlap, no IGNORE_JOBS
cap "$ERR" scontrol-create-reservation-nodes-busy.txt scontrol create reservation reservationname=busy starttime=now+1day duration=60 nodes=node2 users=root
snap 02-jobs-reservations-drain

# --- 03: reboot requested on a busy node, MIXED+DRAIN, a preempted job ----------
scontrol reboot ASAP nextstate=RESUME reason="kernel upgrade" node2
scontrol update nodename=node4 state=drain reason="ECC errors: DIMM B2"
J_PREEMPTOR=$(sub -J preemptor -p batch -w node3 -c 1 -t 1:00:00 --wrap 'sleep 3000')
wait_for "node2 REBOOT_REQUESTED" 20 node_state_has node2 REBOOT_REQUESTED
wait_for "node4 MIXED+DRAIN" 10 node_state_is node4 MIXED+DRAIN
wait_for "scavenger job $J_SCAV preempted" 60 job_state_any "$J_SCAV" PREEMPTED
wait_for "preemptor $J_PREEMPTOR running" 60 job_state_is "$J_PREEMPTOR" RUNNING
snap 03-reboot-requested-preempted

# --- 04: reboot issued, a node not responding, a reboot that never completes --
scontrol update nodename=node5 state=resume
wait_for "node5 IDLE" 10 node_state_is node5 IDLE
kill -TERM "$(cat "$STATE/run/slurmd-node5.pid")"
say "stopped slurmd on node5; waiting for DOWN* (SlurmdTimeout=30)"
touch "$STATE/noboot/node6"
scontrol reboot nextstate=RESUME reason="firmware update" node6
T_NODE6_REBOOT=$SECONDS
wait_for "node5 DOWN*" 120 node_state_has node5 DOWN
echo 20 > "$STATE/reboot-delay"
scancel "$J_UNLIMITED"
wait_for "node2 REBOOT_ISSUED" 30 node_state_has node2 REBOOT_ISSUED
snap 04-reboot-issued-not-responding

# --- 05: node2 back after reboot, node6 reboot timed out -----------------------
wait_for "node2 back IDLE after reboot" 60 node_state_is node2 IDLE
rm -f "$STATE/reboot-delay"
wait_for "node6 reboot timed out" 150 bash -c "scontrol show node node6 -o | grep -q 'reboot timed out'"
say "node6 reboot timeout reached after $((SECONDS - T_NODE6_REBOOT)) s"
snap 05-after-reboot-and-reboot-timeout

# --- no reservations at all ------------------------------------------------------
scontrol delete reservation=maint_node6
scontrol delete reservation=future_maint
scontrol delete reservation=acct_resv 2>/dev/null || true
cap "$ERR" scontrol-show-reservation-none.txt scontrol show reservation -o

for f in "$STATE"/log/fake-reboot-*.log; do
    [[ -e "$f" ]] && { echo "== $f"; cat "$f"; } >&2
done
say "done"
