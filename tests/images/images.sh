#!/usr/bin/env bash
# The container images of ./Dockerfile, built and run for real without an image registry
# or a container runtime. Run as root.
#
# Usage: tests/images/images.sh COMMAND [ARG]
#
#   base SUITE     the Debian base image of SUITE (bookworm | trixie | sid): debootstrap
#                  --variant=minbase, trimmed like Debian's -slim images, saved as a tarball
#                  in CACHE/images/ (rebuilt when its recipe changes) and imported into
#                  buildah's storage as BASE_REF:SUITE
#   build [WHAT..] the controller image and the agent image of each Slurm line (22.05,
#                  24.11, 26.05; WHAT: `controller` and/or lines, default all) from ./Dockerfile with `buildah build` (layers cached),
#                  the binary copied in (BINARY_FROM=prebuilt: $SLURM_MAINT_BIN, default
#                  $CARGO_TARGET_DIR/debug/slurm-maint, stripped); prints sizes and times
#   run LINE       run the images as the chart runs them (tests/images/pods.py): needs
#                  SLURM_MAINT_E2E_KUBECONFIG (tests/k8s/apiserver.sh) and the Slurm LINE
#                  cluster's env (tests/slurm/cluster.sh env | chroot.sh env LINE)
#   from-source    the user path, not run by CI (a release build: minutes of both cores):
#                  a stand-in for rust:1.89-slim-bookworm (the bookworm base, gcc, rustup's
#                  minimal 1.89.0 profile, as that image is made) and both targets built
#                  with BINARY_FROM=build from this checkout, tagged localhost/from-source/...
#                  (BUILD_CA_BUNDLE: a CA bundle for the fetching steps, behind a TLS proxy)
#   sizes          the images and their sizes
#   buildah ARGS   buildah with this script's storage (for poking around)
#
# Storage: buildah with chroot isolation (no user namespaces, no daemon) and the overlay
# driver, or vfs where overlay cannot be mounted (see driver()); its store in
# CACHE/containers/DRIVER, so warm builds reuse layers.
# CACHE = $SLURM_MAINT_CACHE, default ~/.cache/slurm-maint. DEBIAN_MIRROR as chroot.sh.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
CACHE="${SLURM_MAINT_CACHE:-${HOME:-/root}/.cache/slurm-maint}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
STORE="$CACHE/containers"
BASE_REF=localhost/slurm-maint-base/debian
VERSION="$(awk -F'"' '/^version *=/ { print $2; exit }' "$REPO_ROOT/Cargo.toml")"
CONTROLLER_REPO=ghcr.io/slurm-maint/slurm-maint
AGENT_REPO=ghcr.io/slurm-maint/slurm-maint-agent
LINES=(22.05 24.11 26.05)
BASE_RECIPE=1

log() { echo "images.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

suite_of() {
    case "$1" in
        22.05) echo bookworm ;;
        24.11) echo trixie ;;
        26.05) echo sid ;;
        *) return 1 ;;
    esac
}

# The storage driver: overlay where the kernel allows it here (a cached build takes seconds),
# else vfs (every layer and working container a full copy); SLURM_MAINT_BUILDAH_DRIVER to
# choose. Each driver has a store of its own.
driver() {
    if [[ -z "${DRIVER:-}" ]]; then
        DRIVER="${SLURM_MAINT_BUILDAH_DRIVER:-}"
        if [[ -z "$DRIVER" ]]; then
            DRIVER=vfs
            mkdir -p "$STORE/overlay"
            buildah --root "$STORE/overlay" --runroot "$(runroot overlay)" --storage-driver overlay \
                images >/dev/null 2>&1 && DRIVER=overlay
        fi
    fi
    echo "$DRIVER"
}
# buildah's run state (locks, mount counts) on tmpfs, one per store
runroot() { echo "/run/slurm-maint-containers/$(printf '%s' "$STORE" | sha1sum | cut -c1-8)-$1"; }
buildah_argv() {
    local d
    d="$(driver)"
    echo "buildah --root $STORE/$d --runroot $(runroot "$d") --storage-driver $d"
}
bah() {
    local argv
    argv="$(buildah_argv)"
    # shellcheck disable=SC2086
    $argv "$@"
}

# --- base images --------------------------------------------------------------

base_stamp() {
    { echo "$1"; echo "$MIRROR"; echo "$BASE_RECIPE"; declare -f make_base_tar; } | sha256sum | cut -c1-16
}

# make_base_tar SUITE OUT: a minbase Debian root as a tarball, trimmed like the -slim images
# (no docs, man pages, locales, apt lists), with policy-rc.d refusing to start daemons.
make_base_tar() {
    local suite="$1" out="$2" root
    root="$(mktemp -d "$CACHE/images/root-$suite.XXXXXX")"
    debootstrap --variant=minbase "$suite" "$root" "$MIRROR" > "$CACHE/images/debootstrap-$suite.log" 2>&1 \
        || { tail -n 30 "$CACHE/images/debootstrap-$suite.log" >&2; rm -rf --one-file-system "$root"; die "debootstrap $suite failed"; }
    echo 'Acquire::Check-Valid-Until "false";' > "$root/etc/apt/apt.conf.d/99slurm-maint"
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >> "$root/etc/apt/apt.conf.d/99slurm-maint"
    cat > "$root/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
        "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
        "$root"/var/log/* "$root"/tmp/* "$root"/dev/*
    tar --numeric-owner --xattrs -C "$root" -cf "$out.tmp" .
    mv "$out.tmp" "$out"
    rm -rf --one-file-system "$root"
}

cmd_base() {
    local suite="$1" tar stamp t0=$SECONDS ctr
    [[ "$suite" =~ ^(bookworm|trixie|sid)$ ]] || die "unknown suite '$suite'"
    mkdir -p "$CACHE/images"
    tar="$CACHE/images/debian-$suite.tar"
    stamp="$(base_stamp "$suite")"
    if [[ ! -s "$tar" || "$(cat "$tar.stamp" 2>/dev/null)" != "$stamp" ]]; then
        log "debootstrap $suite (minbase) -> $tar"
        make_base_tar "$suite" "$tar"
        echo "$stamp" > "$tar.stamp"
        log "base tarball $suite made in $((SECONDS - t0)) s ($(du -h "$tar" | cut -f1))"
    fi
    # import the tarball when the stored image is missing or from another tarball
    if [[ "$(bah inspect --type image --format '{{index .ImageAnnotations "org.slurm-maint.base-stamp"}}' "$BASE_REF:$suite" 2>/dev/null)" != "$stamp" ]]; then
        ctr="$(bah from --pull=false scratch)"
        bah add --quiet "$ctr" "$tar" / >/dev/null
        bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            --cmd /bin/bash --os linux --arch amd64 \
            --annotation "org.slurm-maint.base-stamp=$stamp" "$ctr"
        bah commit --quiet --rm "$ctr" "$BASE_REF:$suite" >/dev/null
        log "imported $BASE_REF:$suite ($((SECONDS - t0)) s)"
    fi
}

# --- the images ---------------------------------------------------------------

binary() {
    local b="${SLURM_MAINT_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/slurm-maint}"
    [[ -x "$b" ]] || die "no binary at $b (cargo build, or set SLURM_MAINT_BIN)"
    echo "$b"
}

# build_image TARGET TAG BUILD-ARG...: buildah build of ./Dockerfile with the binary copied
# from a context of its own (a stripped copy of the binary only).
build_image() {
    local target="$1" tag="$2" t0=$SECONDS
    shift 2
    bah build --quiet --layers --pull=never --isolation chroot \
        -f "$REPO_ROOT/Dockerfile" --target "$target" \
        --build-arg BINARY_FROM=prebuilt --build-arg BINARY=slurm-maint "$@" \
        -t "$tag" "$CTX" >/dev/null
    log "built $tag in $((SECONDS - t0)) s"
    TIMES+=("$(printf '%4s s  %s' $((SECONDS - t0)) "$tag")")
}

controller_tag() { echo "$CONTROLLER_REPO:$VERSION"; }
agent_tag() { echo "$AGENT_REPO:$VERSION-slurm$1"; }

cmd_build() {
    local t0=$SECONDS line suite bin what=("$@")
    ((${#what[@]})) || what=(controller "${LINES[@]}")
    TIMES=()
    command -v buildah >/dev/null || die "buildah not installed (apt-get install buildah)"
    bin="$(binary)"
    CTX="$(mktemp -d)"
    trap 'rm -rf "$CTX"' EXIT
    # the debug binary's debug info is most of its size; the image needs none of it
    objcopy --strip-debug "$bin" "$CTX/slurm-maint"
    log "binary: $bin ($(du -h "$bin" | cut -f1), stripped $(du -h "$CTX/slurm-maint" | cut -f1))"
    # the three debootstraps at once (network-bound; only when their tarballs are missing)
    local pids=() rc=0
    for suite in bookworm trixie sid; do
        cmd_base "$suite" & pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    ((rc == 0)) || die "a base image failed"
    TIMES+=("$(printf '%4s s  %s' $((SECONDS - t0)) "base images (bookworm, trixie, sid)")")
    for line in "${what[@]}"; do
        if [[ "$line" == controller ]]; then
            # its root-gathering stage tagged too: the controller image is FROM scratch, so
            # nothing else would keep that stage's layers (apt) from the prune below
            build_image controller-root localhost/slurm-maint-cache/controller-root:latest \
                --build-arg BASE_IMAGE="$BASE_REF:bookworm"
            build_image controller "$(controller_tag)" --build-arg BASE_IMAGE="$BASE_REF:bookworm"
            continue
        fi
        suite="$(suite_of "$line")" || die "unknown Slurm line '$line'"
        build_image agent "$(agent_tag "$line")" --build-arg BASE_IMAGE="$BASE_REF:$suite" \
            --build-arg DEBIAN_SUITE="$suite" --build-arg SLURM_LINE="$line"
    done
    prune
    echo "build times:"
    printf '  %s\n' "${TIMES[@]}"
    printf '  %4s s  all\n' $((SECONDS - t0))
    cmd_sizes
    check_images
}

# Drop the images earlier builds left untagged (leaves first, until none is left); the
# layers the current images are built on stay, so the next build still hits the cache.
# (Nothing else may be using this store meanwhile: every working container goes.)
prune() {
    local i n
    # working containers `buildah build` leaves behind for stages used only by COPY --from
    bah rm --all >/dev/null
    for ((i = 0; i < 8; i++)); do
        n="$(bah rmi --prune 2>/dev/null | wc -l)"
        ((n > 0)) || break
    done
    log "store: $(du -sh "$STORE/$(driver)" | cut -f1) in $STORE/$(driver) ($(driver) driver)"
}

cmd_sizes() {
    local line
    echo "image sizes:"
    for ref in "$(controller_tag)" $(for line in "${LINES[@]}"; do agent_tag "$line"; done); do
        printf '  %-55s %s\n' "$ref" "$(bah images --format '{{.Size}}' "$ref" 2>/dev/null || echo missing)"
    done
}

# What the images must be: entrypoint, user, and the agent's Slurm line.
check_images() {
    local ref line v
    ref="$(controller_tag)"
    [[ "$(bah inspect --type image --format '{{.OCIv1.Config.Entrypoint}} {{.OCIv1.Config.User}}' "$ref")" \
        == '[/usr/local/bin/slurm-maint] 65532:65532' ]] || die "$ref: unexpected entrypoint/user"
    for line in "${LINES[@]}"; do
        ref="$(agent_tag "$line")"
        [[ "$(bah inspect --type image --format '{{.OCIv1.Config.Entrypoint}} {{.OCIv1.Config.User}}' "$ref")" \
            == '[/usr/local/bin/slurm-maint] 401:401' ]] || die "$ref: unexpected entrypoint/user"
    done
    # the controller's root holds the binary, its libraries, CA certificates, passwd/group
    # and nothing else: no shell, no package manager
    local ctr root extra
    ctr="$(bah from --pull=never "$(controller_tag)")"
    root="$(bah mount "$ctr")"
    extra="$(cd "$root" && find . -type f -o -type l | grep -Ev '^\./(usr/local/bin/slurm-maint|etc/ssl/certs/ca-certificates\.crt|etc/(passwd|group)|lib64/ld-linux-x86-64\.so\.2|lib/x86_64-linux-gnu/lib(c|m|gcc_s)\.so\.[0-9]+)$' || true)"
    bah umount "$ctr" >/dev/null
    bah rm "$ctr" >/dev/null
    [[ -z "$extra" ]] || die "the controller image has more than the binary needs: $extra"
    log "images checked: entrypoints and users; the controller's root is the binary, libc/libm/libgcc_s, CA certificates, passwd/group (no shell)"
}

cmd_run() {
    local line="$1"
    suite_of "$line" >/dev/null || die "unknown Slurm line '$line'"
    : "${SLURM_MAINT_E2E_KUBECONFIG:?no API server: eval \"\$(bash tests/k8s/apiserver.sh env)\"}"
    : "${SLURM_CONF:?no Slurm cluster: eval its env (tests/slurm/cluster.sh env, chroot.sh env $line)}"
    python3 "$SCRIPT_DIR/pods.py" \
        --line "$line" \
        --controller-image "$(controller_tag)" \
        --agent-image "$(agent_tag "$line")" \
        --buildah "$(buildah_argv)" \
        --chart "$REPO_ROOT/charts/slurm-maint"
}

# A stand-in for docker.io/library/rust:1.89-slim-bookworm, made as that image is made.
rust_base() {
    set -e   # (a command substitution does not inherit errexit)
    local ref=localhost/slurm-maint-base/rust:1.89-slim-bookworm ctr
    bah inspect --type image "$ref" >/dev/null 2>&1 && { echo "$ref"; return; }
    ctr="$(bah from --pull=never "$BASE_REF:bookworm")"
    bah run --isolation chroot "$ctr" -- sh -euc '
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates gcc libc6-dev curl' >&2
    bah run --isolation chroot "${CA_MOUNT[@]}" "$ctr" -- sh -euc '
        curl -sSf -o /tmp/rustup-init https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init
        chmod +x /tmp/rustup-init
        RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo /tmp/rustup-init -y -q --no-modify-path --profile minimal --default-toolchain 1.89.0
        rm -rf /tmp/rustup-init /var/lib/apt/lists/*' >&2
    bah config --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
        --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
    bah commit --quiet --rm "$ctr" "$ref" >/dev/null
    echo "$ref"
}

cmd_from_source() {
    local rust t0=$SECONDS t
    # behind a TLS-intercepting proxy: its CA bundle for the steps that fetch (rustup, cargo)
    CA_MOUNT=()
    [[ -n "${BUILD_CA_BUNDLE:-}" ]] && CA_MOUNT=(-v "$BUILD_CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
    rust="$(rust_base)"
    bah inspect --type image --format '{{.OCIv1.Config.Env}}' "$rust" | grep -q CARGO_HOME || die "no rust base"
    log "rust base $rust ready ($((SECONDS - t0)) s)"
    t=$SECONDS
    # the compile stage alone first: the CA mount (for cargo's downloads) would cover every
    # RUN, and apt's ca-certificates cannot write a bundle mounted over its own
    # shellcheck disable=SC2046
    nice -n 19 $(buildah_argv) build --layers --pull=never --isolation chroot --target build "${CA_MOUNT[@]}" \
        --build-arg RUST_IMAGE="$rust" -t localhost/slurm-maint-cache/build:latest "$REPO_ROOT" >&2
    log "release binary (stage build) in $((SECONDS - t)) s"
    # BINARY_FROM explicitly: buildah (1.28) finds the stages `FROM ${BINARY_FROM}` uses from
    # the command line's build args only, and skips `build` when it is left to its default
    t=$SECONDS
    bah build --layers --pull=never --isolation chroot --target controller \
        --build-arg BINARY_FROM=build --build-arg RUST_IMAGE="$rust" --build-arg BASE_IMAGE="$BASE_REF:bookworm" \
        -t "localhost/from-source/slurm-maint:$VERSION" "$REPO_ROOT" >&2
    log "controller from source in $((SECONDS - t)) s"
    t=$SECONDS
    bah build --layers --pull=never --isolation chroot --target agent \
        --build-arg BINARY_FROM=build --build-arg RUST_IMAGE="$rust" --build-arg BASE_IMAGE="$BASE_REF:trixie" \
        --build-arg DEBIAN_SUITE=trixie --build-arg SLURM_LINE=24.11 \
        -t "localhost/from-source/slurm-maint-agent:$VERSION-slurm24.11" "$REPO_ROOT" >&2
    log "agent (24.11) from source in $((SECONDS - t)) s"
    for ref in "localhost/from-source/slurm-maint:$VERSION" "localhost/from-source/slurm-maint-agent:$VERSION-slurm24.11"; do
        printf '  %-55s %s\n' "$ref" "$(bah images --format '{{.Size}}' "$ref")"
    done
}

main() {
    [[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, buildah, chroot)"
    command -v buildah >/dev/null || die "buildah not installed (apt-get install buildah)"
    DRIVER="$(driver)"
    local cmd="${1:-}"
    shift || true
    case "$cmd" in
        base) cmd_base "${1:?suite}" ;;
        build) cmd_build "$@" ;;
        run) cmd_run "${1:?Slurm line}" ;;
        sizes) cmd_sizes ;;
        from-source) cmd_from_source ;;
        buildah) bah "$@" ;;
        *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
    esac
}

main "$@"
