# Images of slurm-maint, two targets:
#
#   controller (the default): the release binary, the C libraries it links and CA
#     certificates on an empty root; no shell, no package manager; runs as 65532:65532
#     and needs no writable path (readOnlyRootFilesystem).
#       docker build --target controller -t ghcr.io/slurm-maint/slurm-maint:0.1.0 .
#   agent: the binary plus Debian's Slurm client commands (sinfo, squeue, scontrol,
#     scancel) and munge of one Debian release, which fixes the Slurm line. Pick the one
#     matching the site's slurmctld:
#       DEBIAN_SUITE=bookworm SLURM_LINE=22.05   ...-agent:0.1.0-slurm22.05
#       DEBIAN_SUITE=trixie   SLURM_LINE=24.11   ...-agent:0.1.0-slurm24.11
#       DEBIAN_SUITE=sid      SLURM_LINE=26.05   ...-agent:0.1.0-slurm26.05
#       docker build --target agent --build-arg DEBIAN_SUITE=trixie --build-arg SLURM_LINE=24.11 \
#         -t ghcr.io/slurm-maint/slurm-maint-agent:0.1.0-slurm24.11 .
#     The build fails when the suite's slurm-client is not of SLURM_LINE.
#
# Build arguments:
#   RUST_IMAGE    the toolchain that builds the release binary (stage `build`)
#   BASE_IMAGE    Debian base of both targets (default debian:DEBIAN_SUITE-slim); the
#                 controller takes only its libc, libgcc_s and CA certificates
#   BINARY_FROM   `build` (default: cargo build --release from this context) or `prebuilt`:
#                 take BINARY from the build context instead (CI copies the binary it
#                 already built; it must link against a glibc no newer than BASE_IMAGE's)
#   BINARY        path of that binary in the context (default target/release/slurm-maint)
ARG DEBIAN_SUITE=bookworm
ARG BASE_IMAGE=docker.io/library/debian:${DEBIAN_SUITE}-slim
ARG RUST_IMAGE=docker.io/library/rust:1.89-slim-bookworm
ARG BINARY_FROM=build

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY manifests ./manifests
COPY tests/fixtures ./tests/fixtures
RUN cargo build --release --locked --bin slurm-maint \
 && install -D -m 0755 target/release/slurm-maint /out/slurm-maint

FROM scratch AS prebuilt
ARG BINARY=target/release/slurm-maint
COPY ${BINARY} /out/slurm-maint

FROM ${BINARY_FROM} AS binary

# The controller's root: the binary, exactly the shared libraries it loads, CA certificates
# (OCI's API), and passwd/group entries for 65532 (nonroot).
FROM ${BASE_IMAGE} AS controller-root
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=binary /out/slurm-maint /rootfs/usr/local/bin/slurm-maint
RUN set -eu; \
    bin=/rootfs/usr/local/bin/slurm-maint; \
    ldd "$bin"; \
    for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do \
        cp -L --parents "$lib" /rootfs/; \
    done; \
    mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp; \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/; \
    chmod 1777 /rootfs/tmp; \
    echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' > /rootfs/etc/passwd; \
    echo 'nonroot:x:65532:' > /rootfs/etc/group

FROM scratch AS controller
COPY --from=controller-root /rootfs/ /
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/slurm-maint"]
CMD ["controller"]

# The agent: Debian's Slurm client and munge (munged too, for the chart's munge sidecar),
# the `slurm` user of Slinky (401), no munge key (the chart mounts the site's).
FROM ${BASE_IMAGE} AS agent
ARG SLURM_LINE=22.05
RUN set -eu; \
    apt-get update -q; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-client munge ca-certificates; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*; \
    v="$(dpkg-query -W -f '${Version}' slurm-client)"; \
    case "$v" in "$SLURM_LINE".*) ;; *) echo "slurm-client $v is not Slurm $SLURM_LINE: pick the DEBIAN_SUITE of that line" >&2; exit 1 ;; esac; \
    echo "$v" > /etc/slurm-maint-slurm-version; \
    rm -f /etc/munge/munge.key; \
    getent group slurm >/dev/null || groupadd --system --gid 401 slurm; \
    getent passwd slurm >/dev/null || useradd --system --uid 401 --gid 401 --home-dir /nonexistent --shell /usr/sbin/nologin slurm; \
    mkdir -p /etc/slurm
ENV SLURM_CONF=/etc/slurm/slurm.conf
COPY --from=binary /out/slurm-maint /usr/local/bin/slurm-maint
USER 401:401
ENTRYPOINT ["/usr/local/bin/slurm-maint"]
CMD ["agent", "--listen=0.0.0.0:8080"]
