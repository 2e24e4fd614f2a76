#!/usr/bin/env bash
# Re-create the topology fixtures of tests/fixtures/slurm-VERSION/ (VERSION of the installed
# slurmd) from a real single-host cluster of 6 nodes; for 24.11 and 26.05 run it in their
# chroots: `tests/slurm/chroot.sh capture-topology 24.11`. Takes well under a minute.
# For each SLURM_TOPOLOGY of tests/slurm/cluster.sh (none, tree, and block on 23.11+) it
# empties the cluster's state dir, brings the cluster up and stores in topology-MODE/:
# scontrol-show-topology.txt, scontrol-show-node.txt (`-o`, nodes with Features), sinfo.json,
# the topology.conf used and captured-at.txt; a .stderr / .exitcode beside a file when the
# command wrote to stderr / did not exit 0. Leaves the cluster DOWN.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
export PATH="/usr/sbin:/sbin:$PATH"
SLURM_VERSION="$(slurmd -V | awk '{print $2}' | cut -d. -f1,2)"
OUT="${FIXTURE_DIR:-$REPO_ROOT/tests/fixtures/slurm-$SLURM_VERSION}"
CLUSTER="$SCRIPT_DIR/cluster.sh"
export SLURM_NODES=6

say() { echo "capture-topology: $(date +%T) $*" >&2; }

cap() {
    local dir="$1" name="$2"; shift 2
    local rc=0
    "$@" > "$dir/$name" 2> "$dir/$name.stderr" || rc=$?
    [[ -s "$dir/$name.stderr" ]] || rm -f "$dir/$name.stderr"
    if ((rc != 0)); then echo "$rc" > "$dir/$name.exitcode"; fi
}

IFS=. read -r major minor _ <<<"$SLURM_VERSION"
modes=(none tree)
if ((10#$major > 23 || (10#$major == 23 && 10#$minor >= 11))); then modes+=(block); fi

trap '"$CLUSTER" down' EXIT
mkdir -p "$OUT"
for mode in "${modes[@]}"; do
    topology="$mode"
    [[ "$mode" != none ]] || topology=""
    dir="$OUT/topology-$mode"
    rm -rf "$dir"; mkdir -p "$dir"
    say "cluster with SLURM_TOPOLOGY='$topology'"
    SLURM_TOPOLOGY="$topology" "$CLUSTER" clean
    SLURM_TOPOLOGY="$topology" "$CLUSTER" up
    eval "$("$CLUSTER" env)"
    cap "$dir" scontrol-show-topology.txt scontrol show topology
    cap "$dir" scontrol-show-node.txt scontrol show node -o
    cap "$dir" sinfo.json sinfo --json
    if [[ -e "$SLURM_TEST_DIR/topology.conf" ]]; then cp "$SLURM_TEST_DIR/topology.conf" "$dir/topology.conf"; fi
    date -u '+%FT%TZ' > "$dir/captured-at.txt"
    "$CLUSTER" down
done
say "done: ${modes[*]} in $OUT"
