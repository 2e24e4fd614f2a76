#!/usr/bin/env bash
# Re-create tests/fixtures/slurm-VERSION/ (VERSION of the installed slurmd, e.g. 22.05)
# from a real single-host cluster; for 24.11 and 26.05 run it in their chroots:
# `tests/slurm/chroot.sh capture 24.11`. Takes ~4-5 minutes. Wipes and recreates the cluster
# state dir (cluster.sh clean) so job ids start at 1, and leaves the cluster DOWN at the end.
# Needs exactly 6 nodes (the default). 06-squeue-narrow is captured last, on a cluster
# cleaned again (its own capture.sh, copied from slurm-22.05/ when the version has none).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
export PATH="/usr/sbin:/sbin:$PATH"
SLURM_VERSION="$(slurmd -V | awk '{print $2}' | cut -d. -f1,2)"
OUT="${FIXTURE_DIR:-$REPO_ROOT/tests/fixtures/slurm-$SLURM_VERSION}"
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
    cap "$dir" scontrol-show-node.txt scontrol show node -o
    cap "$dir" sinfo-N-long-state.txt sinfo -N -h -o '%N|%T|%E'
    cap "$dir" sinfo-N-short-state.txt sinfo -N -h -o '%N %t'
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
# 24.11+ adds PLANNED to nodes the backfill scheduler holds for a pending job
# (MIXED+PLANNED, IDLE+PLANNED): the state compared here is the one without it.
node_state_is() { local s; s="$(node_state "$1")"; [[ "${s//+PLANNED/}" == "$2" ]]; }
node_state_has() { [[ "$(node_state "$1")" == *"$2"* ]]; }
# up and answering: not DOWN, not NOT_RESPONDING, a BootTime known
node_responding() {
    local l; l="$(scontrol show node "$1" -o)"
    [[ "$l" != *NOT_RESPONDING* && "$l" != *"BootTime=None"* && "$l" != *"State=DOWN"* ]]
}
job_state_is() { [[ "$(squeue -h -j "$1" -o %T 2>/dev/null)" == "$2" ]]; }
job_state_any() { scontrol show job "$1" -o 2>/dev/null | grep -q "JobState=$2 "; }

sub() { sbatch --parsable --chdir=/tmp -o /dev/null -e /dev/null "$@"; }

mkdir -p "$OUT"
cp "$SLURM_CONF" "$OUT/slurm.conf"
if [[ -e "$(dirname "$SLURM_CONF")/cgroup.conf" ]]; then cp "$(dirname "$SLURM_CONF")/cgroup.conf" "$OUT/cgroup.conf"; fi
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
# 22.05 and 24.11 mark node6 DOWN "reboot timed out" after ResumeTimeout; 26.05 was seen
# returning it to service with its old BootTime instead. Either ends REBOOT_ISSUED.
wait_for "node6 reboot over (timed out or returned)" 150 bash -c "! scontrol show node node6 -o | grep -q 'State=[^ ]*REBOOT_ISSUED'"
if scontrol show node node6 -o | grep -q 'reboot timed out'; then
    say "node6 reboot timed out after $((SECONDS - T_NODE6_REBOOT)) s"
else
    say "node6 NOT timed out: back as $(node_state node6) after $((SECONDS - T_NODE6_REBOOT)) s, $(scontrol show node node6 -o | grep -o 'BootTime=[^ ]*')"
fi
snap 05-after-reboot-and-reboot-timeout

# --- 07: just after RESUME of DOWN nodes ----------------------------------------
# For a moment (~0.3 s) after `state=resume` of a DOWN node whose slurmd runs, Slurm
# prints it IDLE+NOT_RESPONDING with BootTime=None. node2 (no reservation) and node6 (in
# maint_node6) are set DOWN by hand if they are not, then resumed together:
# scontrol-show-node-before.txt is just before, scontrol-show-node.txt the first
# `scontrol show node -o` after the resume (tried up to 5 times until node2 shows
# NOT_RESPONDING), scontrol-show-node-settled.txt once both answer again (BootTime known).
# No sinfo.json here: the files are not from one moment, so the forms need not agree.
D07="$OUT/07-just-after-resume"
rm -rf "$D07"; mkdir -p "$D07"
rm -f "$STATE/noboot/node6"
for try in 1 2 3 4 5; do
    for n in node2 node6; do
        if ! node_state_has "$n" DOWN; then
            scontrol update nodename="$n" state=down reason="operator: cable check"
            wait_for "$n DOWN" 10 node_state_has "$n" DOWN
        fi
    done
    rm -f "$D07"/scontrol-update-resume-*
    scontrol show node -o > "$D07/scontrol-show-node-before.txt"
    # one node each: a refused resume must not keep the other down
    cap "$D07" scontrol-update-resume-node2.txt scontrol update nodename=node2 state=resume
    cap "$D07" scontrol-update-resume-node6.txt scontrol update nodename=node6 state=resume
    scontrol show node -o > "$D07/scontrol-show-node.txt"
    date -u '+%FT%TZ' > "$D07/captured-at.txt"
    if grep '^NodeName=node2 ' "$D07/scontrol-show-node.txt" | grep -q 'NOT_RESPONDING'; then
        say "07: caught node2 NOT_RESPONDING just after resume (try $try)"
        break
    fi
    say "07: try $try missed the moment: $(grep '^NodeName=node2 ' "$D07/scontrol-show-node.txt" | grep -o ' State=[^ ]*')"
    for n in node2 node6; do
        [[ -e "$D07/scontrol-update-resume-$n.txt.exitcode" ]] || wait_for "$n responding again" 30 node_responding "$n"
    done
done
for n in node2 node6; do
    if [[ -e "$D07/scontrol-update-resume-$n.txt.exitcode" ]]; then
        say "07: resume of $n refused: $(cat "$D07/scontrol-update-resume-$n.txt.stderr" 2>/dev/null)"
    else
        wait_for "$n responding again" 30 node_responding "$n"
    fi
done
scontrol show node -o > "$D07/scontrol-show-node-settled.txt"

# --- no reservations at all ------------------------------------------------------
scontrol delete reservation=maint_node6
scontrol delete reservation=future_maint
scontrol delete reservation=acct_resv 2>/dev/null || true
cap "$ERR" scontrol-show-reservation-none.txt scontrol show reservation -o

for f in "$STATE"/log/fake-reboot-*.log; do
    [[ -e "$f" ]] && { echo "== $f"; cat "$f"; } >&2
done

# --- 06: the agent's narrow squeue listing, on a fresh cluster --------------------
D06="$OUT/06-squeue-narrow"
if [[ ! -e "$D06/capture.sh" ]]; then
    mkdir -p "$D06"
    cp "$REPO_ROOT/tests/fixtures/slurm-22.05/06-squeue-narrow/capture.sh" "$D06/capture.sh"
fi
"$CLUSTER" clean
"$CLUSTER" up
bash "$D06/capture.sh"
say "done"
