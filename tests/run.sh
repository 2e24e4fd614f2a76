#!/usr/bin/env bash
# The project's test command: installs what the tests need on a fresh Debian 12 machine,
# starts a real Slurm cluster on loopback, and runs every check CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# System packages: Slurm 22.05 and munge from Debian; openssl for the TLS test's certificates.
missing=()
for cmd in slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client munged:munge openssl:openssl; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || missing+=("${cmd##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} slurm-wlm"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq slurm-wlm "${missing[@]}" >/dev/null
fi

# The official OCI Python SDK, which tests/oci_sdk.rs drives against the OCI emulator.
if ! python3 -c 'import oci' >/dev/null 2>&1; then
  echo "== installing the OCI Python SDK (pip install oci)"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-pip >/dev/null
  fi
  python3 -m pip install -q oci 2>/dev/null || python3 -m pip install -q --break-system-packages oci
fi

echo "== format and lints"
cargo fmt --check
cargo clippy --all-targets -- -D warnings

echo "== real Slurm cluster"
bash tests/slurm/cluster.sh up
trap 'bash tests/slurm/cluster.sh down' EXIT
eval "$(bash tests/slurm/cluster.sh env)"
export SLURM_MAINT_LIVE=1

echo "== tests (embedded API server)"
cargo test --all-targets

echo "== e2e against a real kube-apiserver 1.20, built from Debian's source (first run ~7 min)"
K8S_PRELOAD_CRDS=1 bash tests/k8s/apiserver.sh up
trap 'bash tests/k8s/apiserver.sh down; bash tests/slurm/cluster.sh down' EXIT
eval "$(bash tests/k8s/apiserver.sh env)"
echo "== Helm chart, RBAC and manifests against that server (real Helm library: PyPI helm-sdkpy)"
python3 -m pip --version >/dev/null 2>&1 || { as_root apt-get update -qq; DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3 python3-pip >/dev/null; }
if ! python3 -c 'import helm_sdkpy, lupa, yaml' 2>/dev/null; then
  python3 -m pip install -q --ignore-requires-python helm-sdkpy lupa pyyaml 2>/dev/null \
    || python3 -m pip install -q --ignore-requires-python --break-system-packages helm-sdkpy lupa pyyaml
fi
bash tests/chart/check.sh
cargo test --test e2e --test controller_live --test oci_live
cargo test --lib apiserver::
