#!/usr/bin/env bash
# Smoke test of the control plane started by tests/k8s/apiserver.sh up, with curl (and
# the kubectl it found, at the end): version, namespace, the facts of a current server
# (1.34: kube-root-ca.crt in every namespace, no token Secrets but the TokenRequest API,
# no policy/v1beta1, watch BOOKMARKs, CEL rules enforced and their cost estimated), our
# CRDs (server-side apply), a MaintenancePolicy round trip, /status subresource, schema
# and CEL validation, owner-reference GC and namespace deletion (the last two need
# kube-controller-manager). Against the 1.20 fallback the 1.20 facts are checked instead.
#
# Usage: tests/k8s/smoke.sh      (expects `apiserver.sh up` to have run)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
STATE="${K8S_TEST_DIR:-$REPO_ROOT/.k8s-test}"
KC="${SLURM_MAINT_E2E_KUBECONFIG:-$STATE/kubeconfig}"
NS="${SMOKE_NAMESPACE:-slurm-maint-smoke}"
EXAMPLE="${SMOKE_EXAMPLE:-$REPO_ROOT/manifests/examples/balanced.yaml}"

[[ -r "$KC" ]] || { echo "no kubeconfig at $KC: run tests/k8s/apiserver.sh up" >&2; exit 1; }
SERVER="$(awk '/server:/ {print $2; exit}' "$KC")"
TOKEN="$(awk '/token:/ {print $2; exit}' "$KC")"
CA="$(mktemp)"
TMP="$(mktemp -d)"
trap 'rm -rf "$CA" "$TMP"' EXIT
awk '/certificate-authority-data:/ {print $2; exit}' "$KC" | base64 -d > "$CA"

# From here on every check records its own outcome: one failing check (a CRD the server
# refuses, say) must not hide the others.
set +e
pass=0 fail=0
ok() { echo "PASS: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }

# req METHOD PATH [CONTENT-TYPE DATA-FILE] -> body on stdout, HTTP code in $TMP/code
req() {
    local m="$1" p="$2" args=()
    if [[ $# -ge 4 ]]; then args=(-H "Content-Type: $3" --data-binary "@$4"); fi
    curl -sS --max-time 30 --cacert "$CA" -H "Authorization: Bearer ${AS_TOKEN:-$TOKEN}" -X "$m" "${args[@]}" \
        -o "$TMP/body" -w '%{http_code}' "$SERVER$p" > "$TMP/code" || true
    cat "$TMP/body"
}
# wait_code CODE METHOD PATH: poll (every 0.5 s, up to 60 s) until PATH answers CODE
wait_code() {
    local want="$1" i
    for ((i = 0; i < 120; i++)); do
        [[ "$(req "$2" "$3" >/dev/null; code)" == "$want" ]] && return 0
        sleep 0.5
    done
    return 1
}
code() { cat "$TMP/code"; }
yaml2json() { python3 -c 'import yaml,json,sys; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)' "$1"; }

# 1. version: the one apiserver.sh said it started (SLURM_MAINT_K8S_VERSION from its env)
v="$(req GET /version | jq -r .gitVersion)"
want="${SLURM_MAINT_K8S_VERSION:-}"
if [[ -z "$want" ]]; then
    want="$(awk '{print $2}' "$STATE/server" 2>/dev/null || true)"
fi
[[ -n "$v" && ( -z "$want" || "$v" == "$want" ) ]] && ok "version $v${want:+ (expected $want)}" || bad "version is '$v', expected '$want'"
MINOR="$(req GET /version | jq -r .minor | tr -dc 0-9)"
MODERN=0
((MINOR >= 25)) && MODERN=1   # CEL on CRDs GA (1.25+); 1.20 is the fallback

# 2. namespace (delete leftovers of an earlier run first)
if [[ "$(req GET "/api/v1/namespaces/$NS" >/dev/null; code)" == 200 ]]; then
    req DELETE "/api/v1/namespaces/$NS" >/dev/null
    for _ in $(seq 1 60); do [[ "$(req GET "/api/v1/namespaces/$NS" >/dev/null; code)" == 404 ]] && break; sleep 1; done
fi
echo "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$NS\"}}" > "$TMP/ns.json"
req POST /api/v1/namespaces application/json "$TMP/ns.json" >/dev/null
[[ "$(code)" == 201 ]] && ok "namespace $NS created" || bad "namespace create: HTTP $(code) $(cat "$TMP/body")"

# 2b. what a current server does that 1.20 did not (the facts tests meet on 1.34)
if ((MODERN)); then
    # every namespace gets the cluster's CA as ConfigMap kube-root-ca.crt (root-ca-cert-publisher)
    if wait_code 200 GET "/api/v1/namespaces/$NS/configmaps/kube-root-ca.crt"; then
        req GET "/api/v1/namespaces/$NS/configmaps/kube-root-ca.crt" | jq -r '.data["ca.crt"]' > "$TMP/root-ca.crt"
        cmp -s <(openssl x509 -in "$TMP/root-ca.crt" -noout -fingerprint) <(openssl x509 -in "$CA" -noout -fingerprint) \
            && ok "kube-root-ca.crt in $NS holds the cluster CA" || bad "kube-root-ca.crt in $NS is not the cluster CA"
    else
        bad "no kube-root-ca.crt in $NS after 60 s (root-ca-cert-publisher running?)"
    fi
    wait_code 200 GET "/api/v1/namespaces/$NS/serviceaccounts/default" \
        && ok "ServiceAccount default created in $NS" || bad "no ServiceAccount default in $NS after 60 s"
    # policy/v1beta1 is gone (1.25); policy/v1 serves PodDisruptionBudgets
    req GET /apis/policy/v1beta1 >/dev/null
    [[ "$(code)" == 404 ]] && ok "policy/v1beta1 not served (HTTP 404)" || bad "policy/v1beta1: HTTP $(code)"
    r="$(req GET /apis/policy/v1 | jq -r '[.resources[]?.name] | index("poddisruptionbudgets") != null')"
    [[ "$r" == true ]] && ok "policy/v1 serves poddisruptionbudgets" || bad "policy/v1 lacks poddisruptionbudgets"
    # watches send BOOKMARKs (the watch cache sends one ~2 s before timeoutSeconds)
    req GET "/api/v1/namespaces/$NS/configmaps?watch=1&allowWatchBookmarks=true&timeoutSeconds=5" > "$TMP/watch.jsonl"
    bm="$(jq -r 'select(.type == "BOOKMARK") | .object.metadata.resourceVersion' "$TMP/watch.jsonl" 2>/dev/null | head -n 1)"
    [[ -n "$bm" ]] && ok "watch sent a BOOKMARK (resourceVersion $bm)" || bad "no BOOKMARK in a 5 s watch: $(head -c 300 "$TMP/watch.jsonl")"
    # a ServiceAccount gets no token Secret; its token comes from the TokenRequest API
    echo '{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"smoke"}}' > "$TMP/sa.json"
    req POST "/api/v1/namespaces/$NS/serviceaccounts" application/json "$TMP/sa.json" >/dev/null
    [[ "$(code)" == 201 ]] && ok "ServiceAccount smoke created" || bad "ServiceAccount create: HTTP $(code) $(head -c 300 "$TMP/body")"
    echo '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"audiences":["https://kubernetes.default.svc"],"expirationSeconds":600}}' > "$TMP/tr.json"
    SA_TOKEN="$(req POST "/api/v1/namespaces/$NS/serviceaccounts/smoke/token" application/json "$TMP/tr.json" | jq -r '.status.token // empty')"
    [[ "$(code)" == 201 && -n "$SA_TOKEN" ]] && ok "TokenRequest: a bound token for smoke" || bad "TokenRequest: HTTP $(code) $(head -c 300 "$TMP/body")"
    echo '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}' > "$TMP/ssr.json"
    who="$(AS_TOKEN="$SA_TOKEN" req POST /apis/authentication.k8s.io/v1/selfsubjectreviews application/json "$TMP/ssr.json" \
        | jq -r '.status.userInfo.username // empty')"
    [[ "$who" == "system:serviceaccount:$NS:smoke" ]] && ok "the token authenticates as $who" || bad "the token authenticates as '$who' (HTTP $(code))"
    AS_TOKEN="$SA_TOKEN" req GET "/api/v1/namespaces/$NS/secrets" >/dev/null
    [[ "$(code)" == 403 ]] && ok "RBAC: smoke may not list Secrets (403)" || bad "smoke listing Secrets: HTTP $(code)"
    n="$(req GET "/api/v1/namespaces/$NS/secrets" | jq '[.items[] | select(.type == "kubernetes.io/service-account-token")] | length')"
    s="$(req GET "/api/v1/namespaces/$NS/serviceaccounts/smoke" | jq '.secrets // [] | length')"
    [[ "$n" == 0 && "$s" == 0 ]] && ok "no token Secret for any ServiceAccount in $NS" || bad "$n token Secret(s), smoke lists $s"
    # CEL rules are enforced, and their estimated cost must fit: a small CRD of our own
    python3 - "$TMP" <<'PY'
import json, sys
def crd(plural, kind, props, rules):
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": plural + ".smoke.slurm-maint.io"},
            "spec": {"group": "smoke.slurm-maint.io", "scope": "Namespaced",
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": kind + "List"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object", "properties": {"spec": {"type": "object", "properties": props,
                                                                   "x-kubernetes-validations": rules}}}}}]}}
bounded = crd("widgets", "Widget",
              {"min": {"type": "integer"}, "max": {"type": "integer"},
               "names": {"type": "array", "maxItems": 8, "items": {"type": "string", "maxLength": 16}}},
              [{"rule": "!has(self.min) || !has(self.max) || self.min <= self.max", "message": "min must not exceed max"},
               {"rule": "!has(self.names) || self.names.all(x, self.names.exists_one(y, y == x))", "message": "names must be unique"}])
costly = crd("costlywidgets", "CostlyWidget",
             {"names": {"type": "array", "items": {"type": "string"}}},
             [{"rule": "self.names.all(x, self.names.exists_one(y, y == x))", "message": "names must be unique"}])
json.dump(bounded, open(sys.argv[1] + "/widgets.json", "w"))
json.dump(costly, open(sys.argv[1] + "/costly.json", "w"))
PY
    CRDP=/apis/apiextensions.k8s.io/v1/customresourcedefinitions
    req DELETE "$CRDP/costlywidgets.smoke.slurm-maint.io" >/dev/null
    req POST "$CRDP" application/json "$TMP/costly.json" >/dev/null
    msg="$(jq -r '.message // empty' "$TMP/body" 2>/dev/null)"
    [[ "$(code)" == 422 && "$msg" == *"estimated rule cost exceeds budget"* ]] \
        && ok "a CEL rule over an unbounded list of unbounded strings is refused: $(sed 's/.*Forbidden: //; s/]$//' <<<"$msg")" \
        || bad "unbounded CEL rule: HTTP $(code) $msg"
    req PATCH "$CRDP/widgets.smoke.slurm-maint.io?fieldManager=slurm-maint-smoke&force=true" application/apply-patch+yaml "$TMP/widgets.json" >/dev/null
    [[ "$(code)" =~ ^20[01]$ ]] && ok "the same rule with maxItems/maxLength is accepted" || bad "bounded CEL CRD: HTTP $(code) $(head -c 600 "$TMP/body")"
    if wait_code 200 GET "/apis/smoke.slurm-maint.io/v1/namespaces/$NS/widgets"; then
        echo '{"apiVersion":"smoke.slurm-maint.io/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"min":3,"max":1,"names":["a","a"]}}' > "$TMP/w.json"
        req POST "/apis/smoke.slurm-maint.io/v1/namespaces/$NS/widgets" application/json "$TMP/w.json" >/dev/null
        msg="$(jq -r '.message // empty' "$TMP/body" 2>/dev/null)"
        [[ "$(code)" == 422 && "$msg" == *"min must not exceed max"* && "$msg" == *"names must be unique"* ]] \
            && ok "CEL rules enforced, both errors in one message: $msg" || bad "CEL-violating Widget: HTTP $(code) $msg"
        echo '{"apiVersion":"smoke.slurm-maint.io/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"min":1,"max":3,"names":["a","b"]}}' > "$TMP/w.json"
        req POST "/apis/smoke.slurm-maint.io/v1/namespaces/$NS/widgets" application/json "$TMP/w.json" >/dev/null
        [[ "$(code)" == 201 ]] && ok "a Widget that keeps the rules is created" || bad "good Widget: HTTP $(code) $(head -c 300 "$TMP/body")"
    else
        bad "widgets.smoke.slurm-maint.io never served"
    fi
    req DELETE "$CRDP/widgets.smoke.slurm-maint.io" >/dev/null
fi

# 3. CRDs. On a current server: server-side apply, as `kubectl apply --server-side`,
# Helm and the e2e harness do; every CEL rule must fit the cost budget. On 1.20,
# server-side apply of a CRD carrying x-kubernetes-validations fails (HTTP 500 "failed
# to create typed patch object: ... field not declared in schema": SSA type-checks
# against the built-in 1.20 CRD schema); a plain create/replace (JSON) works: the
# unknown field is silently dropped.
CRDP=/apis/apiextensions.k8s.io/v1/customresourcedefinitions
for f in "$REPO_ROOT"/crds/*.yaml; do
    name="$(python3 -c 'import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))["metadata"]["name"])' "$f")"
    req PATCH "$CRDP/$name?fieldManager=slurm-maint-smoke&force=true" application/apply-patch+yaml "$f" >/dev/null
    if ((MODERN)); then
        [[ "$(code)" =~ ^20[01]$ ]] && ok "CRD $name server-side applied (HTTP $(code))" \
            || bad "CRD $name refused: HTTP $(code) $(jq -r '.message? // empty' "$TMP/body" 2>/dev/null | head -c 1500)"
        continue
    fi
    echo "INFO: server-side apply of CRD $name: HTTP $(code) $(jq -r '.message? // empty' "$TMP/body" 2>/dev/null | head -c 160)"
    yaml2json "$f" > "$TMP/crd.json"
    rv="$(req GET "$CRDP/$name" | jq -r '.metadata.resourceVersion // empty' 2>/dev/null || true)"
    if [[ "$(code)" == 200 && -n "$rv" ]]; then
        jq --arg rv "$rv" '.metadata.resourceVersion = $rv' "$TMP/crd.json" > "$TMP/crd-put.json"
        req PUT "$CRDP/$name" application/json "$TMP/crd-put.json" >/dev/null
    else
        req POST "$CRDP" application/json "$TMP/crd.json" >/dev/null
    fi
    [[ "$(code)" =~ ^20[01]$ ]] && ok "CRD $name created/replaced (HTTP $(code))" || bad "CRD $name: HTTP $(code) $(head -c 600 "$TMP/body")"
done
for f in "$REPO_ROOT"/crds/*.yaml; do
    name="$(python3 -c 'import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))["metadata"]["name"])' "$f")"
    est=""
    for _ in $(seq 1 50); do
        est="$(req GET "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$name" \
            | jq -r '.status.conditions[]? | select(.type=="Established") | .status' 2>/dev/null || true)"
        [[ "$est" == True ]] && break
        sleep 0.2
    done
    [[ "$est" == True ]] && ok "CRD $name Established" || bad "CRD $name not Established"
done
n="$(req GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/maintenancepolicies.slurm-maint.io \
    | grep -o 'x-kubernetes-validations' | wc -l || true)"
if ((MODERN)); then
    want_n="$(grep -o 'x-kubernetes-validations' "$REPO_ROOT/crds/maintenancepolicies.slurm-maint.io.yaml" | wc -l)"
    [[ "$n" == "$want_n" ]] && ok "stored MaintenancePolicy CRD keeps its $n x-kubernetes-validations" \
        || bad "stored MaintenancePolicy CRD has $n x-kubernetes-validations, crds/ has $want_n"
else
    echo "INFO: x-kubernetes-validations kept in stored MaintenancePolicy CRD: $n occurrence(s) (1.20 has no CEL: expected 0, silently dropped)"
fi
# the group version may take a moment to show up in discovery
for _ in $(seq 1 50); do
    [[ "$(req GET /apis/slurm-maint.io/v1alpha1 >/dev/null; code)" == 200 ]] && break
    sleep 0.2
done

# 4. MaintenancePolicy round trip
P="/apis/slurm-maint.io/v1alpha1/namespaces/$NS/maintenancepolicies"
python3 - "$EXAMPLE" "$NS" > "$TMP/mp.json" <<'EOF'
import json, sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
d["metadata"]["namespace"] = sys.argv[2]
json.dump(d, sys.stdout)
EOF
MP="$(jq -r .metadata.name "$TMP/mp.json")"
req POST "$P" application/json "$TMP/mp.json" > "$TMP/created.json"
[[ "$(code)" == 201 ]] && ok "MaintenancePolicy $MP created" || bad "create MaintenancePolicy: HTTP $(code) $(head -c 600 "$TMP/body")"
req GET "$P/$MP" > "$TMP/got.json"
if [[ "$(code)" == 200 ]] && python3 - "$TMP/mp.json" "$TMP/got.json" <<'EOF'
import json, sys
sent, got = (json.load(open(f)) for f in sys.argv[1:3])
def sub(a, b):  # every field sent is returned unchanged (defaults may add more)
    if isinstance(a, dict):
        return isinstance(b, dict) and all(k in b and sub(v, b[k]) for k, v in a.items())
    return a == b
sys.exit(0 if sub(sent["spec"], got["spec"]) else 1)
EOF
then ok "MaintenancePolicy read back, spec intact"; else bad "read back: HTTP $(code) / spec differs"; fi
UID_="$(jq -r .metadata.uid "$TMP/got.json")"

# 5. status subresource (merge patch), and status must not be writable via the main resource
cat > "$TMP/status.json" <<'EOF'
{"status":{"observedGeneration":1,"nodesNeedingWork":3,
 "conditions":[{"type":"Ready","status":"True","reason":"Smoke","message":"from smoke.sh","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}
EOF
req PATCH "$P/$MP/status" application/merge-patch+json "$TMP/status.json" >/dev/null
[[ "$(code)" == 200 ]] && ok "status written via /status" || bad "status patch: HTTP $(code) $(head -c 600 "$TMP/body")"
r="$(req GET "$P/$MP" | jq -c '[.status.observedGeneration, .status.nodesNeedingWork, .status.conditions[0].reason]')"
[[ "$r" == '[1,3,"Smoke"]' ]] && ok "status read back $r" || bad "status read back: $r"
echo '{"status":{"nodesNeedingWork":99}}' > "$TMP/st2.json"
req PATCH "$P/$MP" application/merge-patch+json "$TMP/st2.json" >/dev/null
r="$(req GET "$P/$MP" | jq -c .status.nodesNeedingWork)"
[[ "$r" == 3 ]] && ok "status ignored on main resource" || bad "status changed via main resource: $r"

# 6. schema validation is active (enum); CEL rules are too, except on 1.20
echo '{"status":{"conditions":[{"type":"Ready","status":"Maybe","reason":"X","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}' > "$TMP/bad.json"
req PATCH "$P/$MP/status" application/merge-patch+json "$TMP/bad.json" >/dev/null
[[ "$(code)" == 422 ]] && ok "enum violation rejected (422)" || bad "enum violation: HTTP $(code)"
echo '{"spec":{"budget":{"maxUnavailable":1,"maxUnavailablePercent":10}}}' > "$TMP/cel.json"
req PATCH "$P/$MP" application/merge-patch+json "$TMP/cel.json" >/dev/null
if ((MODERN)); then
    msg="$(jq -r '.message // empty' "$TMP/body" 2>/dev/null)"
    [[ "$(code)" == 422 && "$msg" == *"not both"* ]] && ok "CEL rule enforced: ${msg:0:200}" \
        || bad "CEL-violating spec (both maxUnavailable and maxUnavailablePercent): HTTP $(code) $msg"
else
    echo "INFO: CEL-violating spec (both maxUnavailable and maxUnavailablePercent): HTTP $(code) (1.20 ignores x-kubernetes-validations)"
fi
echo '{"spec":{"budget":{"maxUnavailable":null}},"metadata":{"labels":{"smoke":"yes"}}}' > "$TMP/undo.json"
req PATCH "$P/$MP" application/merge-patch+json "$TMP/undo.json" >/dev/null

# 6b. empty strings are strings (needs the kube-openapi patch when built with Go >= 1.19)
echo '{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Smoke","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}' > "$TMP/empty.json"
req PATCH "$P/$MP/status" application/merge-patch+json "$TMP/empty.json" >/dev/null
[[ "$(code)" == 200 ]] && ok "empty string accepted in a custom object" || bad "empty string rejected: HTTP $(code) $(jq -r .message "$TMP/body" 2>/dev/null)"

# 7. server-side apply on the custom object, managedFields
python3 - "$TMP/mp.json" > "$TMP/ssa.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
json.dump({"apiVersion": d["apiVersion"], "kind": d["kind"],
           "metadata": {"name": d["metadata"]["name"], "namespace": d["metadata"]["namespace"]},
           "spec": {"paused": True}}, sys.stdout)
EOF
req PATCH "$P/$MP?fieldManager=slurm-maint-smoke&force=true" application/apply-patch+yaml "$TMP/ssa.json" > "$TMP/ssa-out.json"
if [[ "$(code)" == 200 && "$(jq -r .spec.paused "$TMP/ssa-out.json")" == true ]]; then
    ok "server-side apply on custom object; managers: $(jq -c '[.metadata.managedFields[] | {manager, operation, subresource}]' "$TMP/ssa-out.json")"
else
    bad "server-side apply: HTTP $(code) $(head -c 600 "$TMP/body")"
fi

# 8. owner-reference GC (needs kube-controller-manager)
cat > "$TMP/cm.json" <<EOF
{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"owned-by-$MP","namespace":"$NS",
 "ownerReferences":[{"apiVersion":"slurm-maint.io/v1alpha1","kind":"MaintenancePolicy","name":"$MP","uid":"$UID_","controller":true,"blockOwnerDeletion":true}]},
 "data":{"k":"v"}}
EOF
req POST "/api/v1/namespaces/$NS/configmaps" application/json "$TMP/cm.json" >/dev/null
owned=0
[[ "$(code)" == 201 ]] && { owned=1; ok "owned ConfigMap created"; } || bad "owned ConfigMap: HTTP $(code) $(head -c 600 "$TMP/body")"
req DELETE "$P/$MP" >/dev/null
[[ "$(code)" =~ ^20[02]$ ]] && ok "MaintenancePolicy deleted" || bad "delete policy: HTTP $(code)"
gone=0
t0=$SECONDS
# the GC rediscovers resource types every 30 s: a CRD created after
# kube-controller-manager started is only watched after that resync
for _ in $(seq 1 100); do
    ((owned)) || break
    [[ "$(req GET "/api/v1/namespaces/$NS/configmaps/owned-by-$MP" >/dev/null; code)" == 404 ]] && { gone=1; break; }
    sleep 0.5
done
if ((!owned)); then
    bad "garbage collection not checked: there was no owned ConfigMap"
elif ((gone)); then
    ok "owned ConfigMap garbage-collected after $((SECONDS - t0)) s"
else
    bad "owned ConfigMap still there after 50 s (is kube-controller-manager running?)"
fi

# 9. namespace deletion (namespace controller)
req DELETE "/api/v1/namespaces/$NS" >/dev/null
gone=0
for _ in $(seq 1 60); do
    [[ "$(req GET "/api/v1/namespaces/$NS" >/dev/null; code)" == 404 ]] && { gone=1; break; }
    sleep 0.5
done
((gone)) && ok "namespace $NS deleted" || bad "namespace $NS not gone after 30 s"

# 10. the kubectl apiserver.sh found for this server (SLURM_MAINT_KUBECTL from its env)
KUBECTL="${SLURM_MAINT_KUBECTL:-$(bash "$SCRIPT_DIR/apiserver.sh" kubectl 2>/dev/null || true)}"
if [[ -n "$KUBECTL" ]]; then
    kv="$("$KUBECTL" version --client 2>/dev/null | head -n 1)"
    # Read whole before matching: grep -q stops at the first match, and with other
    # projects' CRDs installed (tests/chart/next_to.py) kubectl would then die of SIGPIPE.
    crds="$("$KUBECTL" --kubeconfig "$KC" get crd -o name 2>&1)"
    grep -q '^customresourcedefinition.apiextensions.k8s.io/nodemaintenances.slurm-maint.io$' <<<"$crds" \
        && ok "kubectl get crd ($kv)" || bad "kubectl get crd ($kv): $(head -c 300 <<<"$crds")"
    if ((MODERN)); then
        t="$("$KUBECTL" --kubeconfig "$KC" -n default create token default --duration 10m 2>&1)"
        [[ "$t" == ey* ]] && ok "kubectl create token (TokenRequest)" || bad "kubectl create token: $t"
    fi
else
    bad "no kubectl within the skew of the server (tests/k8s/apiserver.sh kubectl)"
fi

echo "smoke: $pass passed, $fail failed"
((fail == 0))
