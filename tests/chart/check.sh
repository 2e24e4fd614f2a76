#!/usr/bin/env bash
# The Helm chart and the manifests against the real Helm library (helm-sdkpy) and a real
# kube-apiserver (tests/k8s/apiserver.sh):
#
#   1. the chart's CRDs are crds/ byte for byte; `helm lint` passes without a warning;
#   2. bad values are refused by values.schema.json with a readable message, and
#      contradictory ones by the templates (checked on a copy of the chart without
#      crds/: Helm installs crds/ before it validates the values, so a CRD the server
#      refuses would hide the values' errors);
#   3. a real `helm install` creates the CRDs (on a fresh server), ServiceAccounts, RBAC,
#      Services, the policy/v1 PDB, the token Secret and both Deployments; the token is
#      never printed and survives upgrades;
#      an HA upgrade (2 replicas, dashboard ConfigMap, agent with Slurm config) applies;
#   4. RBAC: every call the controller makes (the list below is checked against the
#      Api<...> types used in src/controller) is allowed for its ServiceAccount, and
#      Secrets outside its scope, CRD deletion and cluster-wide things it does not need are
#      refused; then the real controller binary runs under that ServiceAccount with a
#      token from the TokenRequest API (`kubectl create token`: 1.24+ creates no token
#      Secrets) and must reconcile a policy without a single 403;
#   5. (every file in manifests/ is applied by tests/k8s/manifests.sh)
#   6. the Argo CD health check (Lua 5.1) gives the expected health for real policy
#      objects; the GitOps manifests are well formed;
#   7. manifests/install.yaml is what the chart renders (--update-install rewrites it);
#   8. uninstall removes the workloads and keeps the CRDs (and so the policies).
#
# Needs SLURM_MAINT_E2E_KUBECONFIG (eval "$(bash tests/k8s/apiserver.sh env)"), python3 with
# helm-sdkpy, lupa and PyYAML (tests/run.sh installs them), and a kubectl within the skew of
# the server: SLURM_MAINT_KUBECTL (set by that env), else `tests/k8s/apiserver.sh kubectl`.
# Optional: SLURM_MAINT_BIN (default target/debug/slurm-maint) for the controller run.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
CHART=charts/slurm-maint
NS=slurm
RELEASE=slurm-maint
UPDATE_INSTALL=0
[[ "${1:-}" == --update-install ]] && UPDATE_INSTALL=1

: "${SLURM_MAINT_E2E_KUBECONFIG:?run eval \"\$(bash tests/k8s/apiserver.sh env)\" first}"
export KUBECONFIG=$SLURM_MAINT_E2E_KUBECONFIG
KUBECTL="${SLURM_MAINT_KUBECTL:-$(bash tests/k8s/apiserver.sh kubectl || true)}"
[[ -n "$KUBECTL" ]] || { echo "no kubectl within the skew of the server (tests/k8s/apiserver.sh kubectl)"; exit 1; }
kubectl() { "$KUBECTL" "$@"; }
SERVER_VERSION=$(kubectl version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])' || true)
SERVER_MINOR=$(sed -E 's/^v1\.([0-9]+).*/\1/' <<<"$SERVER_VERSION")
[[ "$SERVER_MINOR" =~ ^[0-9]+$ ]] || { echo "cannot read the server's version ('$SERVER_VERSION')"; exit 1; }
echo "server $SERVER_VERSION, kubectl $("$KUBECTL" version --client 2>/dev/null | head -n 1) ($KUBECTL)"
HELM="python3 $REPO/tests/chart/helm.py"
WORK=$(mktemp -d)
CTL_PID=
cleanup() {
    [[ -n "$CTL_PID" ]] && kill "$CTL_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
# The chart's PodDisruptionBudget is policy/v1 (Kubernetes 1.21+). The 1.20 fallback
# server has no policy/v1: there the chart is installed without its PDB.
PDB=1 NO_PDB=()
if ((SERVER_MINOR < 21)); then
    PDB=0
    printf 'podDisruptionBudget:\n  enabled: false\n' > "$WORK/no-pdb.yaml"
    NO_PDB=("$WORK/no-pdb.yaml")
    echo "note: $SERVER_VERSION serves no policy/v1: the chart is installed without its PodDisruptionBudget"
fi

FAILS=0
pass() { echo "  ok   $*"; }
fail() { echo "  FAIL $*"; FAILS=$((FAILS + 1)); }
section() { echo "-- $*"; }

section "chart CRDs are crds/"
if diff -r crds "$CHART/crds" >/dev/null; then pass "charts/slurm-maint/crds == crds"; else
    fail "charts/slurm-maint/crds differs from crds/: cp crds/*.yaml $CHART/crds/"; fi

section "helm lint (Helm $(python3 -c 'import helm_sdkpy._ffi as f; print(f.get_version())'))"
if $HELM lint "$CHART" > "$WORK/lint.json"; then
    python3 - "$WORK/lint.json" <<'EOF' && pass "helm lint: no errors, no warnings" || fail "helm lint warnings"
import json, sys
r = json.load(open(sys.argv[1]))
bad = [m for m in r["Messages"] or [] if m["Severity"] >= 2]
for m in r["Messages"] or []:
    print("       ", ["", "INFO", "WARNING", "ERROR"][m["Severity"]], m["Path"], json.dumps(m["Err"]))
sys.exit(1 if bad else 0)
EOF
else
    cat "$WORK/lint.json"; fail "helm lint"
fi

section "clean slate"
$HELM uninstall "$RELEASE" "$NS" >/dev/null 2>&1 || true
# Policies left by an earlier run keep their finalizer without a controller: drop it.
for p in $(kubectl -n "$NS" get mpol -o name 2>/dev/null); do
    kubectl -n "$NS" patch "$p" --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null || true
done
kubectl delete namespace "$NS" argocd --ignore-not-found --wait=false >/dev/null 2>&1 || true
for _ in $(seq 1 90); do
    kubectl get namespace "$NS" >/dev/null 2>&1 || kubectl get namespace argocd >/dev/null 2>&1 || break
    sleep 1
done
kubectl create namespace "$NS" >/dev/null
kubectl create namespace argocd >/dev/null

section "bad values are refused by values.schema.json"
# Helm's install creates crds/ first and validates the values after: on a server that
# refuses one of the CRDs, that error would be all one sees. The values are the chart's
# own business, so they are checked on a copy without crds/.
cp -r "$CHART" "$WORK/chart-nocrds"
rm -rf "$WORK/chart-nocrds/crds"
if $HELM install "$RELEASE" "$WORK/chart-nocrds" "$NS" tests/chart/bad-values.yaml > /dev/null 2> "$WORK/bad.err"; then
    fail "bad values were accepted"
else
    sed 's/^/       | /' "$WORK/bad.err"
    for want in "/controller/replicas" "/controller/metricsPort" "/agent/token/value" "/agent/slurm/auth" "secretNames"; do
        grep -q -- "$want" "$WORK/bad.err" && pass "refused, names $want" || fail "error does not name $want"
    done
fi
printf 'controller:\n  replicas: 2\n  leaderElection:\n    enabled: false\n' > "$WORK/noleader.yaml"
if $HELM install "$RELEASE" "$WORK/chart-nocrds" "$NS" "$WORK/noleader.yaml" > /dev/null 2> "$WORK/noleader.err"; then
    fail "2 replicas without leader election were accepted"
else
    grep -q "needs controller.leaderElection.enabled=true" "$WORK/noleader.err" \
        && pass "2 replicas without leader election refused: $(grep -o 'controller.replicas > 1[^"]*' "$WORK/noleader.err" | head -1)" \
        || { cat "$WORK/noleader.err"; fail "unexpected error for replicas without leader election"; }
fi

section "helm install"
CRDS_BEFORE=$(kubectl get crd -o name 2>/dev/null | grep -c '\.slurm-maint\.io$' || true)
if ! $HELM install "$RELEASE" "$CHART" "$NS" "${NO_PDB[@]}" > "$WORK/install.json" 2> "$WORK/install.err"; then
    cat "$WORK/install.err"; fail "helm install"
    echo; echo "chart check: $FAILS failure(s) (stopped: nothing to check without the release)"; exit 1
fi
pass "helm install $RELEASE ($(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["status"], "revision", r["version"])' "$WORK/install.json"))"
for crd in maintenancepolicies nodemaintenances ocimaintenanceevents; do
    if kubectl wait --for=condition=Established "crd/$crd.slurm-maint.io" --timeout=60s >/dev/null 2>&1; then
        pass "CRD $crd.slurm-maint.io Established"; else fail "CRD $crd missing or not Established"; fi
done
if [[ $CRDS_BEFORE == 0 ]]; then pass "helm install created the CRDs (a server without them before)"; else
    echo "  note $CRDS_BEFORE of our CRDs were there before the install (not a fresh server): Helm left them as they were"; fi
if ((PDB)); then
    [[ "$(kubectl -n "$NS" get poddisruptionbudget slurm-maint-controller -o jsonpath='{.apiVersion}' 2>/dev/null)" == policy/v1 ]] \
        && pass "PodDisruptionBudget is policy/v1" || fail "PodDisruptionBudget is not policy/v1"
fi
for obj in deployment/slurm-maint-controller deployment/slurm-maint-agent \
    serviceaccount/slurm-maint-controller serviceaccount/slurm-maint-agent \
    service/slurm-maint-controller-metrics service/slurm-maint-agent \
    secret/slurm-maint-agent-token $( ((PDB)) && echo poddisruptionbudget/slurm-maint-controller) \
    role/slurm-maint-controller-leader-election rolebinding/slurm-maint-controller-leader-election \
    role/slurm-maint-controller-secrets rolebinding/slurm-maint-controller-secrets; do
    kubectl -n "$NS" get "$obj" >/dev/null 2>&1 && pass "$NS/$obj" || fail "$NS/$obj missing"
done
for obj in clusterrole/slurm-maint-controller clusterrolebinding/slurm-maint-controller; do
    kubectl get "$obj" >/dev/null 2>&1 && pass "$obj" || fail "$obj missing"
done
# Pod security of both Deployments, as stored by the server.
kubectl -n "$NS" get deployment slurm-maint-controller slurm-maint-agent -o json > "$WORK/deploys.json"
python3 - "$WORK/deploys.json" <<'EOF' && pass "restricted pod security on both Deployments; probes, POD_NAME/POD_NAMESPACE, grace period" || fail "pod security / probes"
import json, sys
ok = True
for d in json.load(open(sys.argv[1]))["items"]:
    name = d["metadata"]["name"]; pod = d["spec"]["template"]["spec"]
    def need(cond, what):
        global ok
        if not cond:
            print("       ", name, "lacks", what); ok = False
    need(pod["securityContext"].get("runAsNonRoot") is True, "pod runAsNonRoot")
    need(pod["securityContext"].get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
    need(pod.get("terminationGracePeriodSeconds", 0) >= 5, "terminationGracePeriodSeconds")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        need(sc.get("allowPrivilegeEscalation") is False, c["name"] + " allowPrivilegeEscalation false")
        need(sc.get("readOnlyRootFilesystem") is True, c["name"] + " readOnlyRootFilesystem")
        need(sc.get("capabilities", {}).get("drop") == ["ALL"], c["name"] + " drop ALL")
        need("requests" in c.get("resources", {}), c["name"] + " resources")
        need("readinessProbe" in c and "livenessProbe" in c, c["name"] + " probes")
    if name.endswith("controller"):
        c = pod["containers"][0]
        need(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness /readyz")
        need(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness /healthz")
        env = {e["name"] for e in c.get("env", [])}
        need({"POD_NAME", "POD_NAMESPACE"} <= env, "POD_NAME/POD_NAMESPACE env")
        need(d["spec"]["replicas"] == 1, "1 replica by default")
sys.exit(0 if ok else 1)
EOF
TOKEN=$(kubectl -n "$NS" get secret slurm-maint-agent-token -o jsonpath='{.data.token}' | base64 -d)
[[ ${#TOKEN} -eq 48 ]] && pass "agent token generated (48 characters)" || fail "agent token has ${#TOKEN} characters"
if grep -qF "$TOKEN" <(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["notes"])' "$WORK/install.json"); then
    fail "NOTES print the token"; else pass "NOTES do not print the token"; fi

section "helm upgrade keeps the token"
$HELM upgrade "$RELEASE" "$CHART" "$NS" "${NO_PDB[@]}" > "$WORK/upgrade.json" 2> "$WORK/upgrade.err" || { cat "$WORK/upgrade.err"; fail "helm upgrade"; }
TOKEN2=$(kubectl -n "$NS" get secret slurm-maint-agent-token -o jsonpath='{.data.token}' | base64 -d)
[[ "$TOKEN" == "$TOKEN2" ]] && pass "token unchanged after upgrade (lookup)" || fail "upgrade changed the token"

section "RBAC of the controller's ServiceAccount"
SA=system:serviceaccount:$NS:slurm-maint-controller
# What the controller calls, from src/controller (kube Api<T> per type; the finalizer
# helper patches the policy; status by server-side apply; kube-runtime's event Recorder;
# the Lease elector get/create/replace) and what the OCI controller will call.
declare -A CALLS=(
    [MaintenancePolicy]="get,list,watch,patch:maintenancepolicies.slurm-maint.io get,patch:maintenancepolicies.slurm-maint.io/status"
    [NodeMaintenance]="get,list,watch,create:nodemaintenances.slurm-maint.io get,patch:nodemaintenances.slurm-maint.io/status"
    [OciMaintenanceEvent]="get,list,watch,create,update,patch:ocimaintenanceevents.slurm-maint.io get,update,patch:ocimaintenanceevents.slurm-maint.io/status"
    [Secret]="get:secrets/slurm-maint-agent-token"
    [Lease]="create:leases.coordination.k8s.io get,update:leases.coordination.k8s.io/slurm-maint-controller"
    [Event]="create,patch:events.events.k8s.io"
    # Opt-in (rbac.configMapNames, for OCI host mapping): checked after the HA upgrade.
    [ConfigMap]=""
)
used=$(grep -hoE 'Api(::)?<[A-Za-z]+>' src/controller/*.rs | sed -E 's/Api(::)?<(.*)>/\2/' | sort -u)
grep -q 'events::Recorder' src/controller/*.rs && used="$used Event"
for t in $used; do
    [[ -v "CALLS[$t]" ]] && pass "src/controller uses Api<$t>: covered" \
        || fail "src/controller uses Api<$t>: add its RBAC to the chart and to CALLS in $0"
done
can() { # can VERB RESOURCE [NS] -> yes/no
    local verb=$1 res=$2 ns=${3:-$NS} sub=()
    if [[ "$res" == */status ]]; then sub=(--subresource=status); res=${res%/status}; fi
    kubectl auth can-i "$verb" "$res" "${sub[@]}" --as="$SA" -n "$ns" 2>/dev/null || true
}
for t in "${!CALLS[@]}"; do
    for entry in ${CALLS[$t]}; do
        verbs=${entry%%:*}; res=${entry#*:}
        for v in ${verbs//,/ }; do
            [[ "$(can "$v" "$res")" == yes ]] && pass "yes: $v $res" || fail "refused: $v $res ($t)"
        done
    done
done
# The policy namespace's Secrets beyond the named one, other namespaces, CRDs, and
# cluster-wide things the controller never needs.
while read -r verb res ns; do
    [[ "$(can "$verb" "$res" "$ns")" == no ]] && pass "no:  $verb $res -n $ns" || fail "allowed: $verb $res -n $ns"
done <<EOF
get secrets/some-other-secret $NS
list secrets $NS
watch secrets $NS
get secrets/slurm-maint-agent-token kube-system
list secrets kube-system
update secrets/slurm-maint-agent-token $NS
delete customresourcedefinitions.apiextensions.k8s.io $NS
update customresourcedefinitions.apiextensions.k8s.io $NS
create customresourcedefinitions.apiextensions.k8s.io $NS
delete maintenancepolicies.slurm-maint.io $NS
update maintenancepolicies.slurm-maint.io $NS
delete nodemaintenances.slurm-maint.io $NS
delete ocimaintenanceevents.slurm-maint.io $NS
update leases.coordination.k8s.io/another-lease $NS
delete leases.coordination.k8s.io/slurm-maint-controller $NS
create leases.coordination.k8s.io kube-system
get configmaps/slurm-config $NS
create pods $NS
delete pods $NS
create pods/eviction $NS
list nodes $NS
patch nodes $NS
create clusterrolebindings.rbac.authorization.k8s.io $NS
create rolebindings.rbac.authorization.k8s.io $NS
impersonate users $NS
create serviceaccounts/token $NS
EOF
AGENT_SA=system:serviceaccount:$NS:slurm-maint-agent
for q in "get secrets/slurm-maint-agent-token" "list maintenancepolicies.slurm-maint.io"; do
    [[ "$(kubectl auth can-i $q --as="$AGENT_SA" -n "$NS" 2>/dev/null || true)" == no ]] \
        && pass "agent SA: no $q" || fail "agent SA may $q"
done

section "the controller binary under its ServiceAccount"
BIN=${SLURM_MAINT_BIN:-target/debug/slurm-maint}
if [[ ! -x "$BIN" ]]; then
    echo "  skip: $BIN not built"
else
    # A bound token from the TokenRequest API, as the kubelet mounts into the pod (no
    # token Secret exists on 1.24+; none must be needed).
    echo '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":3600}}' > "$WORK/tokenrequest.json"
    sa_token=$(kubectl create --raw "/api/v1/namespaces/$NS/serviceaccounts/slurm-maint-controller/token" \
        -f "$WORK/tokenrequest.json" 2> "$WORK/token.err" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["token"])' 2>>"$WORK/token.err" || true)
    if [[ "$SERVER_MINOR" -ge 24 ]]; then
        [[ -z "$(kubectl -n "$NS" get serviceaccount slurm-maint-controller -o jsonpath='{.secrets}' 2>/dev/null)" ]] \
            && pass "no token Secret for the ServiceAccount (TokenRequest only)" || fail "the ServiceAccount lists token Secrets"
    fi
    if [[ "$sa_token" != ey* ]]; then
        fail "no ServiceAccount token from the TokenRequest API: $(cat "$WORK/token.err")"
    else
        if ((SERVER_MINOR >= 28)); then
            who=$(kubectl --token="$sa_token" auth whoami -o jsonpath='{.status.userInfo.username}' 2>/dev/null || true)
            [[ "$who" == "$SA" ]] && pass "TokenRequest token authenticates as $who" || fail "the token authenticates as '$who'"
        fi
        kubectl config view --raw --minify > "$WORK/sa.kubeconfig"
        KUBECONFIG="$WORK/sa.kubeconfig" kubectl config set-credentials sa --token="$sa_token" >/dev/null
        KUBECONFIG="$WORK/sa.kubeconfig" kubectl config set-context --current --user=sa >/dev/null
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        # A policy whose agent is not there: the controller lists/watches policies, adds
        # its finalizer, reads the token Secret, calls the agent, writes status and events.
        kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: slurm-maint.io/v1alpha1
kind: MaintenancePolicy
metadata: {name: rbac-probe, namespace: $NS}
spec:
  partition: compute
  agent: {url: "http://127.0.0.1:9", tokenSecretRef: {name: slurm-maint-agent-token}}
  campaign: {rebootRequiredBefore: "2026-12-01T00:00:00Z"}
EOF
        KUBECONFIG="$WORK/sa.kubeconfig" POD_NAMESPACE=$NS POD_NAME=rbac-probe-0 \
            "$BIN" controller --metrics-addr "127.0.0.1:$port" > "$WORK/controller.log" 2>&1 &
        CTL_PID=$!
        reason=""
        for _ in $(seq 1 30); do
            reason=$(kubectl -n "$NS" get mpol rbac-probe -o jsonpath='{.status.conditions[?(@.type=="Degraded")].reason}' 2>/dev/null || true)
            [[ -n "$reason" ]] && break
            sleep 1
        done
        msg=$(kubectl -n "$NS" get mpol rbac-probe -o jsonpath='{.status.conditions[?(@.type=="Degraded")].message}' 2>/dev/null || true)
        [[ "$reason" == SlurmUnreachable && "$msg" == *"agent unreachable"* ]] \
            && pass "policy reconciled under the SA: Degraded/$reason ($msg) — token Secret read, status patched" \
            || fail "policy not reconciled under the SA: reason '$reason' message '$msg'"
        [[ "$(kubectl -n "$NS" get mpol rbac-probe -o jsonpath='{.metadata.finalizers[0]}')" == slurm-maint.io/cleanup ]] \
            && pass "finalizer added (patch)" || fail "no finalizer"
        holder=$(kubectl -n "$NS" get lease slurm-maint-controller -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)
        [[ "$holder" == rbac-probe-0 ]] && pass "Lease $NS/slurm-maint-controller held by $holder" || fail "Lease holder '$holder'"
        kubectl -n "$NS" get events.events.k8s.io -o jsonpath='{range .items[*]}{.reason} {.regarding.name}{"\n"}{end}' \
            | grep -q "SlurmUnreachable rbac-probe" && pass "events.k8s.io Event written" || fail "no Event"
        curl -sf "127.0.0.1:$port/metrics" > "$WORK/metrics.txt" || true
        for series in slurm_maint_reconciles_total slurm_maint_reconcile_duration_seconds_bucket \
            'slurm_maint_slurm_calls_total{verb="snapshot",outcome="unreachable"}' slurm_maint_slurm_call_duration_seconds_count; do
            grep -qF "$series" "$WORK/metrics.txt" && pass "/metrics has $series" || fail "/metrics lacks $series"
        done
        curl -sf "127.0.0.1:$port/healthz" >/dev/null && curl -sf "127.0.0.1:$port/readyz" >/dev/null \
            && pass "/healthz and /readyz answer" || fail "/healthz or /readyz"
        if grep -Ei 'forbidden|\b403\b' "$WORK/controller.log" | head -5; then fail "403 in the controller's log"; else
            pass "no 403 in the controller's log"; fi
        kill "$CTL_PID"; wait "$CTL_PID" 2>/dev/null || true; CTL_PID=
        # Its agent is not there, so the cleanup could never withdraw anything: drop the
        # finalizer (the documented way out), then delete.
        kubectl -n "$NS" patch mpol rbac-probe --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null
        kubectl -n "$NS" delete mpol rbac-probe --wait=false >/dev/null
    fi
fi

section "GitOps"
python3 tests/chart/health.py manifests/gitops/argocd/health.lua tests/chart/health-fixtures \
    && pass "Argo CD health check (Lua 5.1) on real policies" || fail "Argo CD health check"
python3 - <<'EOF' && pass "argocd-cm embeds health.lua; Application, Flux and kustomization well formed" || fail "GitOps manifests"
import os, sys, yaml
lua = open("manifests/gitops/argocd/health.lua").read()
cm = yaml.safe_load(open("manifests/gitops/argocd/argocd-cm-health.yaml"))
key = "resource.customizations.health.slurm-maint.io_MaintenancePolicy"
assert cm["data"][key] == lua, "argocd-cm-health.yaml is not health.lua"
app = yaml.safe_load(open("manifests/gitops/argocd/application.yaml"))
assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
assert app["spec"]["destination"]["namespace"] == "slurm" and app["spec"]["source"]["path"]
flux = list(yaml.safe_load_all(open("manifests/gitops/flux/kustomization.yaml")))
kinds = {(d["apiVersion"], d["kind"]) for d in flux}
assert ("source.toolkit.fluxcd.io/v1", "GitRepository") in kinds
assert ("kustomize.toolkit.fluxcd.io/v1", "Kustomization") in kinds
ks = [d for d in flux if d["kind"] == "Kustomization"][0]
assert ks["spec"]["sourceRef"]["name"] == [d for d in flux if d["kind"] == "GitRepository"][0]["metadata"]["name"]
assert ks["spec"]["healthChecks"][0]["kind"] == "MaintenancePolicy"
k = yaml.safe_load(open("manifests/gitops/campaign/kustomization.yaml"))
for r in k["resources"]:
    assert os.path.exists(os.path.join("manifests/gitops/campaign", r)), r
EOF

section "HA upgrade and manifests/install.yaml"
$HELM upgrade "$RELEASE" "$CHART" "$NS" tests/chart/ha-values.yaml "${NO_PDB[@]}" > "$WORK/ha.json" 2> "$WORK/ha.err" \
    && pass "upgrade to 2 replicas, dashboard ConfigMap, agent with slurm.conf and slurm.key" || { cat "$WORK/ha.err"; fail "HA upgrade"; }
[[ "$(kubectl -n "$NS" get deployment slurm-maint-controller -o jsonpath='{.spec.replicas}')" == 2 ]] \
    && pass "controller replicas 2" || fail "controller replicas"
kubectl -n "$NS" get configmap slurm-maint-dashboard -o jsonpath='{.data.slurm-maint\.json}' | python3 -c '
import json, sys; d = json.load(sys.stdin); print("       dashboard:", len(d["panels"]), "panels")' \
    && pass "Grafana dashboard ConfigMap" || fail "dashboard ConfigMap"
[[ "$(kubectl auth can-i get secrets/oci-api-key --as="$SA" -n "$NS" 2>/dev/null || true)" == yes ]] \
    && pass "rbac.extraSecretNames: oci-api-key readable" || fail "oci-api-key not readable"
[[ "$(kubectl auth can-i get configmaps/oci-host-map --as="$SA" -n "$NS" 2>/dev/null || true)" == yes ]] \
    && pass "rbac.configMapNames: oci-host-map readable" || fail "oci-host-map not readable"
[[ "$(kubectl auth can-i list configmaps --as="$SA" -n "$NS" 2>/dev/null || true)" == no ]] \
    && pass "configmaps still not listable" || fail "configmaps listable"
kubectl -n "$NS" get deployment slurm-maint-agent -o jsonpath='{.spec.template.spec.volumes[?(@.name=="slurm-etc")].projected.sources}' \
    | grep -q slurm-auth && pass "agent mounts slurm.conf ConfigMap and slurm.key Secret" || fail "agent Slurm volume"
kubectl -n "$NS" get configmap slurm-maint-agent-checks -o jsonpath='{.data.checks\.yaml}' > "$WORK/checks.yaml" \
    && python3 - "$WORK/checks.yaml" <<'EOF' && pass "agent checks ConfigMap holds the checks of the values" || fail "agent checks ConfigMap"
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))["checks"]
assert [x["name"] for x in c] == ["ready", "gpu-ecc"], c
assert c[0]["argv"] == ["scontrol", "show", "node", "{node}"] and c[0]["retries"] == 3, c[0]
assert c[1]["failPattern"] == r"^\d+, *[1-9]", c[1]
EOF
kubectl -n "$NS" get deployment slurm-maint-agent -o json | python3 -c '
import json, sys
d = json.load(sys.stdin)["spec"]["template"]["spec"]
agent = [c for c in d["containers"] if c["name"] == "agent"][0]
assert "--checks-file=/etc/slurm-maint/checks/checks.yaml" in agent["args"], agent["args"]
assert {"name": "checks", "mountPath": "/etc/slurm-maint/checks", "readOnly": True} in agent["volumeMounts"]
assert [v for v in d["volumes"] if v["name"] == "checks"][0]["configMap"]["name"] == "slurm-maint-agent-checks"
' && pass "agent runs with --checks-file from that ConfigMap" || fail "agent --checks-file"
if ((!PDB)); then
    echo "  skip manifests/install.yaml: it is rendered for policy/v1, which $SERVER_VERSION does not serve"
elif [[ $UPDATE_INSTALL == 1 ]]; then
    $HELM render-install "$RELEASE" "$CHART" "$NS" tests/chart/install-values.yaml "$WORK/install.yaml"
    cp "$WORK/install.yaml" manifests/install.yaml
    pass "manifests/install.yaml rewritten"
else
    $HELM render-install "$RELEASE" "$CHART" "$NS" tests/chart/install-values.yaml "$WORK/install.yaml"
    if diff -u manifests/install.yaml "$WORK/install.yaml" > "$WORK/install.diff"; then
        pass "manifests/install.yaml is current"; else
        head -40 "$WORK/install.diff"; fail "manifests/install.yaml is stale: bash tests/chart/check.sh --update-install"; fi
fi
((PDB)) && python3 - "$WORK/install.yaml" "$WORK/install-nocrd.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1]))
        if d and d["kind"] not in ("CustomResourceDefinition", "Namespace")]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
EOF
if ((!PDB)); then :
elif out=$(kubectl apply --dry-run=server -f "$WORK/install-nocrd.yaml" 2>&1); then
    pass "install.yaml passes a server-side dry run ($(grep -c '^kind:' "$WORK/install-nocrd.yaml") objects besides Namespace and CRDs)"; else
    echo "$out" | head -10; fail "install.yaml dry run"; fi

section "helm uninstall"
kubectl -n "$NS" apply -f manifests/examples/01-monitor-only.yaml >/dev/null
$HELM uninstall "$RELEASE" "$NS" && pass "helm uninstall" || fail "helm uninstall"
kubectl -n "$NS" get deployment slurm-maint-controller >/dev/null 2>&1 && fail "controller Deployment left" || pass "Deployments removed"
kubectl get crd maintenancepolicies.slurm-maint.io >/dev/null 2>&1 && pass "CRDs kept" || fail "CRDs removed"
kubectl -n "$NS" get mpol monitor-only >/dev/null 2>&1 && pass "policies kept" || fail "policy removed"
kubectl -n "$NS" delete mpol monitor-only --wait=false >/dev/null
kubectl delete namespace "$NS" argocd --wait=false >/dev/null 2>&1 || true

echo
if [[ $FAILS -gt 0 ]]; then echo "chart check: $FAILS failure(s)"; exit 1; fi
echo "chart check: all passed"
