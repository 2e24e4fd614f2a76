#!/usr/bin/env bash
# RebootProgram for the single-host test cluster (tests/slurm/cluster.sh).
#
# slurmd runs this without telling which node it is, so we walk up our parent
# processes until we find `slurmd ... -N nodeX`. Then a helper in a session of its own
# stops that slurmd, waits, and restarts it with `-b` (reports a fresh boot, so
# slurmctld completes the reboot and applies nextstate).
#
# Knobs (STATE = $SLURM_TEST_DIR, else the directory holding slurm.conf):
#   $STATE/hang/<node>      exists -> slurmd is stopped and never restarted
#   $STATE/noboot/<node>    exists -> slurmd restarted WITHOUT -b (slurmctld
#                           usually marks the node DOWN "reboot timed out"; 22.05
#                           now and then returns it to service at ResumeTimeout
#                           instead: use hang/ for a certain timeout)
#   $STATE/reboot-delay     seconds between stop and restart (else env
#                           FAKE_REBOOT_DELAY, else 3)
# Helper log: $STATE/log/fake-reboot-<node>.log; helper pid: $STATE/run/reboot-<node>.pid
set -euo pipefail

export PATH="/usr/sbin:/sbin:/usr/bin:/bin:$PATH"

if [[ "${1:-}" == "--helper" ]]; then
    # detached part: --helper NODE SLURMD_PID CONF STATE
    node="$2" spid="$3" conf="$4" state="$5"
    echo $$ > "$state/run/reboot-$node.pid.tmp"
    mv "$state/run/reboot-$node.pid.tmp" "$state/run/reboot-$node.pid"
    trap 'rm -f "$state/run/reboot-$node.pid"' EXIT
    echo "$(date '+%F %T') reboot $node: stopping slurmd pid $spid"
    kill -TERM "$spid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        [[ -d "/proc/$spid" ]] || break
        sleep 0.1
    done
    if [[ -d "/proc/$spid" ]]; then
        echo "$(date '+%F %T') slurmd $spid still alive after 10 s, SIGKILL"
        kill -KILL "$spid" 2>/dev/null || true
        sleep 0.5
    fi
    if [[ -e "$state/hang/$node" ]]; then
        echo "$(date '+%F %T') $state/hang/$node exists: node hangs, not restarting slurmd"
        exit 0
    fi
    delay="${FAKE_REBOOT_DELAY:-3}"
    [[ -r "$state/reboot-delay" ]] && delay="$(tr -dc '0-9.' < "$state/reboot-delay")"
    sleep "${delay:-3}"
    if [[ -e "$state/run/stopping" ]]; then
        echo "$(date '+%F %T') cluster is stopping: not restarting slurmd"
        exit 0
    fi
    args=(-N "$node" -f "$conf")
    if [[ -e "$state/noboot/$node" ]]; then
        echo "$(date '+%F %T') $state/noboot/$node exists: restarting slurmd WITHOUT -b"
    else
        args+=(-b)
    fi
    echo "$(date '+%F %T') restarting: slurmd ${args[*]}"
    SLURM_CONF="$conf" slurmd "${args[@]}"
    echo "$(date '+%F %T') slurmd restarted"
    exit 0
fi

# --- find our slurmd ------------------------------------------------------
pid=$$
node="" conf="" spid=""
while [[ "$pid" -gt 1 ]]; do
    if [[ -r "/proc/$pid/cmdline" ]]; then
        mapfile -d '' argv < "/proc/$pid/cmdline" || true
        if [[ ${#argv[@]} -gt 0 && "$(basename "${argv[0]}")" == slurmd ]]; then
            for ((i = 1; i < ${#argv[@]}; i++)); do
                case "${argv[i]}" in
                    -N) node="${argv[i + 1]:-}" ;;
                    -N?*) node="${argv[i]#-N}" ;;
                    -f) conf="${argv[i + 1]:-}" ;;
                    -f?*) conf="${argv[i]#-f}" ;;
                esac
            done
            if [[ -n "$node" ]]; then
                spid="$pid"
                break
            fi
        fi
    fi
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || break
    rest="${stat##*) }"          # fields after "pid (comm) "
    read -r _state ppid _ <<<"$rest"
    pid="$ppid"
done

if [[ -z "$spid" ]]; then
    echo "fake-reboot.sh: no 'slurmd -N <node>' ancestor found" >&2
    exit 1
fi
[[ -n "$conf" ]] || conf="${SLURM_CONF:-}"
[[ -n "$conf" ]] || { echo "fake-reboot.sh: cannot tell slurm.conf of $node" >&2; exit 1; }
state="${SLURM_TEST_DIR:-$(dirname "$conf")}"
mkdir -p "$state/log"

# Start the helper in a session (and process group) of its own, and return only once it is
# there: slurmd (26.05 at least) kills the RebootProgram's process group when the program
# exits, which would take along a helper not yet out of it. `setsid -f` forks, and the
# child calls setsid() before it execs bash, so the helper's pid file is written from its
# new session.
pidfile="$state/run/reboot-$node.pid"
mkdir -p "$state/run"
rm -f "$pidfile"
setsid -f nohup bash "${BASH_SOURCE[0]}" --helper "$node" "$spid" "$conf" "$state" \
    </dev/null >>"$state/log/fake-reboot-$node.log" 2>&1
for ((i = 0; i < 200; i++)); do
    hpid="$({ tr -dc '0-9' < "$pidfile"; } 2>/dev/null)" || hpid=""
    if [[ -n "$hpid" ]]; then
        stat="$(cat "/proc/$hpid/stat" 2>/dev/null)" || stat=""
        rest="${stat##*) }"
        read -r _state _ppid _pgrp sid _ <<<"$rest"
        # in its own session, or already done (it removes its pid file when it ends)
        if [[ -z "$stat" || "${sid:-}" == "$hpid" ]]; then
            exit 0
        fi
    fi
    sleep 0.05
done
echo "fake-reboot.sh: helper for $node did not start within 10 s (see $state/log/fake-reboot-$node.log)" >&2
exit 1
