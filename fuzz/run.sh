#!/usr/bin/env bash
# The fuzz targets (fuzz/fuzz_targets/) with libFuzzer through cargo-fuzz.
#
# Usage: fuzz/run.sh smoke [SECONDS] [TARGET ...]   each target SECONDS (default 5): fails on
#                                                   the first crash, with its input
#        fuzz/run.sh bench [SECONDS] [TARGET ...]   each target SECONDS (default 60): a table
#                                                   of execs, execs/s, coverage, crashes
#        fuzz/run.sh list                           the targets
#
# Each run starts from the committed seeds (fuzz/corpus/TARGET, read only) and writes what
# it finds to a scratch corpus, so the repository is left as it was. A crash's input is
# kept in fuzz/artifacts/TARGET/ (reproduce: fuzz/run.sh repro TARGET FILE); make it a
# regression test in the main crate before fixing it.
#
# cargo-fuzz is installed from crates.io when missing; it needs nightly flags, which the
# stable toolchain allows with RUSTC_BOOTSTRAP=1 (set here for cargo-fuzz only). Targets are
# built once (debug assertions and overflow checks on, 16 codegen units for a shorter
# build, no sanitizer: the code is safe Rust, the failures sought are panics) into
# $FUZZ_TARGET_DIR (default fuzz/target).
set -euo pipefail
FUZZ="$(cd "$(dirname "$0")" && pwd)"
cd "$FUZZ"
TARGET_DIR="${FUZZ_TARGET_DIR:-$FUZZ/target}"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
# The smoke run builds without optimisations (a shorter build on every source change; it
# runs seconds, not minutes); bench and repro build optimised. FUZZ_PROFILE overrides.
profile="${FUZZ_PROFILE:-$([ "${1:-}" = smoke ] && echo dev || echo release)}"
case "$profile" in
    dev) PROFILE_FLAGS=(--dev) BIN="$TARGET_DIR/$TRIPLE/debug" ;;
    release) PROFILE_FLAGS=(-O) BIN="$TARGET_DIR/$TRIPLE/release" ;;
    *) echo "FUZZ_PROFILE must be dev or release, not $profile" >&2; exit 2 ;;
esac

targets() { sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^slurm-maint-fuzz$'; }

build() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "installing cargo-fuzz"
        cargo install --locked cargo-fuzz
    fi
    RUSTC_BOOTSTRAP=1 cargo fuzz build "${PROFILE_FLAGS[@]}" --debug-assertions --sanitizer none \
        --codegen-units 16 --target-dir "$TARGET_DIR" "$@"
}

# run TARGET SECONDS STATS_FILE: fuzz TARGET for SECONDS; libFuzzer's exit status.
run() {
    local target="$1" seconds="$2" stats="$3" scratch
    scratch=$(mktemp -d)
    mkdir -p "$FUZZ/artifacts/$target"
    set +e
    "$BIN/$target" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=2048 -max_len=65536 -artifact_prefix="$FUZZ/artifacts/$target/" \
        "$scratch" "$FUZZ/corpus/$target" > "$stats" 2>&1
    local rc=$?
    set -e
    rm -rf "$scratch"
    return $rc
}

stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1 || true; }

mode="${1:-}"
shift || true
case "$mode" in
    list) targets ;;
    smoke | bench)
        seconds="${1:-$([ "$mode" = smoke ] && echo 5 || echo 60)}"
        shift || true
        selected=("$@")
        [ ${#selected[@]} -gt 0 ] || mapfile -t selected < <(targets)
        build
        log=$(mktemp -d)
        failed=()
        printf '| %-22s | %12s | %9s | %6s | %8s | %7s |\n' target execs execs/s cov "corpus+" crashes
        printf '|%s|%s|%s|%s|%s|%s|\n' ------------------------ -------------- ----------- -------- ---------- ---------
        for t in "${selected[@]}"; do
            rc=0
            run "$t" "$seconds" "$log/$t" || rc=$?
            execs=$(stat number_of_executed_units "$log/$t")
            per_s=$(stat average_exec_per_sec "$log/$t")
            added=$(stat new_units_added "$log/$t")
            cov=$(grep -o "cov: [0-9]*" "$log/$t" | tail -n 1 | cut -d" " -f2 || true)
            crashes=0
            if [ "$rc" -ne 0 ]; then
                crashes=1
                failed+=("$t")
            fi
            printf '| %-22s | %12s | %9s | %6s | %8s | %7s |\n' "$t" "${execs:-?}" "${per_s:-?}" \
                "${cov:-?}" "${added:-?}" "$crashes"
        done
        for t in "${failed[@]}"; do
            echo
            echo "== $t crashed (libFuzzer's report):"
            grep -v '^#[0-9]' "$log/$t" | tail -n 40
            ls -1 "$FUZZ/artifacts/$t"/crash-* "$FUZZ/artifacts/$t"/timeout-* "$FUZZ/artifacts/$t"/oom-* 2>/dev/null || true
        done
        rm -rf "$log"
        echo "fuzz $mode: ${#selected[@]} targets, $seconds s each: ${#failed[@]} crashed"
        [ ${#failed[@]} -eq 0 ]
        ;;
    repro)
        [ $# -eq 2 ] || { echo "usage: $0 repro TARGET FILE" >&2; exit 2; }
        build "$1"
        "$BIN/$1" "$2"
        ;;
    *)
        sed -n '2,19p' "$0"
        exit 2
        ;;
esac
