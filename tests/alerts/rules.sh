#!/usr/bin/env bash
# The chart's alerts (charts/slurm-maint/templates/prometheusrule.yaml), rendered by a real
# Helm install (helm-sdkpy) on the test API server and checked with Debian's promtool.
#
# Usage: tests/alerts/rules.sh render OUT [VALUES.yaml ...]
#          the PrometheusRule the chart renders with prometheusRule.enabled=true (and the
#          values given), as a Prometheus rule file at OUT
#        tests/alerts/rules.sh test
#          render with the chart's defaults, `promtool check rules`, then
#          `promtool test rules tests/alerts/rules-test.yaml` on them
#
# Needs SLURM_MAINT_E2E_KUBECONFIG (eval "$(bash tests/k8s/apiserver.sh env)"), helm-sdkpy
# and PyYAML (tests/run.sh installs them), and promtool (Debian's `prometheus`).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
: "${SLURM_MAINT_E2E_KUBECONFIG:?run eval \"\$(bash tests/k8s/apiserver.sh env)\" first}"
export KUBECONFIG=$SLURM_MAINT_E2E_KUBECONFIG
KUBECTL="${SLURM_MAINT_KUBECTL:-$(bash tests/k8s/apiserver.sh kubectl)}"
kubectl() { "$KUBECTL" "$@"; }

render() {
    local out="$1" ns release work
    shift
    work=$(mktemp -d)
    # A namespace and release of its own, so nothing meets the other chart checks.
    ns="alerts-render-$$-$RANDOM"
    release="alerts-$RANDOM"
    kubectl apply -f tests/alerts/prometheusrule-crd.yaml >/dev/null
    kubectl wait --for condition=Established --timeout=60s crd/prometheusrules.monitoring.coreos.com >/dev/null
    kubectl create namespace "$ns" >/dev/null
    printf 'prometheusRule:\n  enabled: true\nagent:\n  enabled: false\n' > "$work/enable.yaml"
    local rc=0
    python3 tests/chart/helm.py install "$release" charts/slurm-maint "$ns" "$work/enable.yaml" "$@" \
        > "$work/release.json" || rc=$?
    if [ "$rc" = 0 ]; then
        kubectl -n "$ns" get prometheusrules -o json > "$work/rules.json" || rc=$?
    fi
    python3 tests/chart/helm.py uninstall "$release" "$ns" >/dev/null 2>&1 || true
    kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
    [ "$rc" = 0 ] || { rm -rf "$work"; echo "rendering the chart's PrometheusRule failed" >&2; return "$rc"; }
    python3 - "$work/rules.json" "$out" <<'PY'
import json, sys, yaml
items = json.load(open(sys.argv[1]))["items"]
if len(items) != 1:
    sys.exit(f"expected one PrometheusRule, the chart rendered {len(items)}")
groups = items[0]["spec"]["groups"]
with open(sys.argv[2], "w") as f:
    f.write("# Rendered from charts/slurm-maint (PrometheusRule " + items[0]["metadata"]["name"] + ")\n")
    yaml.safe_dump({"groups": groups}, f, sort_keys=False, width=1000)
print(f"{sum(len(g['rules']) for g in groups)} rules rendered", file=sys.stderr)
PY
    rm -rf "$work"
}

case "${1:-}" in
    render)
        shift
        [ $# -ge 1 ] || { echo "usage: $0 render OUT [VALUES.yaml ...]" >&2; exit 2; }
        render "$@"
        ;;
    test)
        command -v promtool >/dev/null || { echo "promtool missing (apt-get install prometheus)" >&2; exit 1; }
        dir=$(mktemp -d)
        trap 'rm -rf "$dir"' EXIT
        render "$dir/rules.yaml"
        cp tests/alerts/rules-test.yaml "$dir/"
        promtool check rules "$dir/rules.yaml"
        promtool test rules "$dir/rules-test.yaml"
        ;;
    *)
        sed -n '2,13p' "$0"
        exit 2
        ;;
esac
