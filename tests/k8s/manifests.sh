#!/usr/bin/env bash
# Everything a user applies, applied to a real API server as a user would
# (`kubectl apply --server-side`):
#
#   1. the generated CRDs (crds/) and the chart's CRDs (charts/slurm-maint/crds/): accepted
#      and Established (on 1.34 every CEL rule must fit the cost budget);
#   2. every YAML file in manifests/ (examples, GitOps campaign via its kustomization,
#      argocd-cm, install.yaml): accepted and stored; objects of kinds this server does not
#      serve (Argo CD's Application, Flux's objects) are reported as skipped, only when the
#      server's answer is exactly "no matches for kind";
#   3. the deliberately invalid policies of tests/crds.rs (cel_refuses_bad_policies, read
#      from that file, so the two lists cannot drift apart) and the NodeMaintenance rules:
#      refused, each with its message; a policy with a wrongly typed field too.
#
# Needs SLURM_MAINT_E2E_KUBECONFIG (eval "$(bash tests/k8s/apiserver.sh env)") and a kubectl
# within the skew of the server (SLURM_MAINT_KUBECTL, else `tests/k8s/apiserver.sh kubectl`).
# Uses the namespaces slurm, argocd and slurm-maint-manifests, and deletes what it created
# (the CRDs stay).
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${SLURM_MAINT_E2E_KUBECONFIG:?run eval \"\$(bash tests/k8s/apiserver.sh env)\" first}"
export KUBECONFIG=$SLURM_MAINT_E2E_KUBECONFIG
KUBECTL="${SLURM_MAINT_KUBECTL:-$(bash tests/k8s/apiserver.sh kubectl || true)}"
[[ -n "$KUBECTL" ]] || { echo "no kubectl within the skew of the server (tests/k8s/apiserver.sh kubectl)"; exit 1; }
kubectl() { "$KUBECTL" "$@"; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TESTNS=slurm-maint-manifests
CREATED_NS=()   # namespaces this run created (deleted at the end)

PASSED=0 FAILED=0 SKIPPED=0
pass() { echo "  ok   $*"; PASSED=$((PASSED + 1)); }
fail() { echo "  FAIL $*"; FAILED=$((FAILED + 1)); }
skip() { echo "  skip $*"; SKIPPED=$((SKIPPED + 1)); }
section() { echo "-- $*"; }
one_line() { tr '\n' ' ' | sed 's/  */ /g' | cut -c1-"${1:-400}"; }

echo "server $(kubectl version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])'), kubectl $("$KUBECTL" version --client 2>/dev/null | head -n 1)"

# wait_gone NAMESPACE...: a namespace of an earlier run may still be terminating
wait_gone() {
    local ns i
    for ns in "$@"; do
        for ((i = 0; i < 180; i++)); do
            kubectl get namespace "$ns" >/dev/null 2>&1 || break
            # policies of an earlier run keep their finalizer without a controller
            for p in $(kubectl -n "$ns" get mpol -o name 2>/dev/null); do
                kubectl -n "$ns" patch "$p" --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
            done
            sleep 0.5
        done
        kubectl get namespace "$ns" >/dev/null 2>&1 && { echo "namespace $ns still there after 90 s"; return 1; }
    done
    return 0
}

section "CRDs: crds/ and charts/slurm-maint/crds/ (kubectl apply --server-side)"
# --force-conflicts: on a server used before, other field managers (the e2e harness,
# Helm, apiserver.sh's preload) may own fields of an older version of these CRDs.
for dir in crds charts/slurm-maint/crds; do
    if out=$(kubectl apply --server-side --force-conflicts -f "$dir/" 2>&1); then
        pass "$dir/: $(one_line <<<"$out")"
    else
        fail "$dir/ refused: $out"
    fi
done
for f in crds/*.yaml; do
    name=$(basename "$f" .yaml)
    if kubectl wait --for=condition=Established "crd/$name" --timeout=60s >/dev/null 2>&1; then
        pass "$name Established"
    else
        fail "$name not Established"
    fi
done

section "every file in manifests/"
kubectl delete namespace "$TESTNS" --ignore-not-found --wait=false >/dev/null 2>&1
if kubectl get namespace slurm >/dev/null 2>&1 && [[ -z "$(kubectl get namespace slurm -o jsonpath='{.metadata.deletionTimestamp}')" ]]; then
    echo "  note namespace slurm exists (objects already there are left alone; the ones applied here are deleted after)"
fi
wait_gone "$TESTNS" || fail "namespace $TESTNS does not go away"
for ns in slurm argocd "$TESTNS"; do
    if [[ -n "$(kubectl get namespace "$ns" -o jsonpath='{.metadata.deletionTimestamp}' 2>/dev/null)" ]]; then
        wait_gone "$ns" || fail "namespace $ns stays Terminating"
    fi
    if ! kubectl get namespace "$ns" >/dev/null 2>&1; then
        kubectl create namespace "$ns" >/dev/null
        [[ $ns == "$TESTNS" ]] || CREATED_NS+=("$ns")
    fi
done
# The campaign's kustomization applies compute.yaml; README.md files are not manifests.
APPLIED=()
while IFS= read -r f; do
    dir=$(dirname "$f")
    if [[ $(basename "$f") == kustomization.yaml ]] && grep -q '^apiVersion: kustomize.config.k8s.io/' "$f"; then
        args=(-k "$dir")
        what="$dir (kustomization)"
    else
        # listed by a kustomization next to it: applied through that
        if [[ -f "$dir/kustomization.yaml" ]] && grep -q '^apiVersion: kustomize.config.k8s.io/' "$dir/kustomization.yaml" \
            && grep -qE "^[[:space:]]*-[[:space:]]*$(basename "$f")[[:space:]]*$" "$dir/kustomization.yaml"; then
            continue
        fi
        args=(-f "$f")
        what="$f"
    fi
    # deleted at the end, whatever the outcome: a file refused in part (one object of
    # install.yaml, say) still creates the others
    APPLIED+=("${args[*]}")
    if out=$(kubectl apply --server-side --force-conflicts "${args[@]}" 2>&1); then
        # read back what was applied
        if got=$(kubectl get "${args[@]}" -o name 2>&1); then
            pass "$what: $(one_line 300 <<<"$out")"
        else
            fail "$what applied but not found: $got"
        fi
    elif grep -qE 'no matches for kind "[A-Za-z]+" in version "([a-z0-9.]+\.)?(argoproj\.io|fluxcd\.io)/' <<<"$out" \
        && ! grep -v 'no matches for kind' <<<"$out" | grep -qiE 'error|invalid'; then
        skip "$what: $(one_line 200 <<<"$out") (needs Argo CD's / Flux's CRDs)"
    else
        fail "$what: $out"
    fi
done < <(find manifests -name '*.yaml' | sort)

section "invalid objects are refused with their messages (cases of tests/crds.rs)"
if ! python3 - tests/crds.rs "$TESTNS" "$WORK" <<'PY'
import json, os, re, sys
src, ns, work = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3]

def json_macro(text, start):
    """The JSON inside json!( ... ) opening at text[start:]; returns (value, end index)."""
    assert text.startswith("json!(", start)
    i, depth, in_str = start + len("json!("), 1, False
    while depth:
        c = text[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        i += 1
    body = text[start + len("json!("):i - 1]
    body = re.sub(r",(\s*[}\]])", r"\1", body)  # trailing commas
    return json.loads(body), i

def fn_body(name):
    m = re.search(r"fn " + name + r"\(\)[^{]*\{", src)
    if not m:
        sys.exit(f"tests/crds.rs has no fn {name}()")
    return m.end()

base, _ = json_macro(src, src.index("json!(", fn_body("base_spec")))
start = fn_body("cel_refuses_bad_policies")
end = src.index("\n}\n", start)
cases, i = [], start
while True:
    j = src.find("json!(", i, end)
    if j < 0:
        break
    patch, k = json_macro(src, j)
    m = re.match(r'\s*,\s*"((?:[^"\\]|\\.)*)"', src[k:])
    if not m:
        sys.exit(f"tests/crds.rs: no message after the case at offset {j}")
    cases.append((patch, json.loads('"' + m.group(1) + '"')))
    i = k
if len(cases) < 5:
    sys.exit(f"read only {len(cases)} cases from tests/crds.rs cel_refuses_bad_policies")
out = []
for n, (patch, want) in enumerate(cases):
    spec = dict(base)
    spec.update(patch)
    obj = {"apiVersion": "slurm-maint.io/v1alpha1", "kind": "MaintenancePolicy",
           "metadata": {"name": f"invalid-{n}", "namespace": ns}, "spec": spec}
    path = os.path.join(work, f"invalid-{n}.json")
    json.dump(obj, open(path, "w"))
    out.append(f"{path}\t{want}\t{json.dumps(patch)}")
ok = {"apiVersion": "slurm-maint.io/v1alpha1", "kind": "MaintenancePolicy",
      "metadata": {"name": "valid-base", "namespace": ns}, "spec": base}
json.dump(ok, open(os.path.join(work, "valid-base.json"), "w"))
open(os.path.join(work, "cases.tsv"), "w").write("\n".join(out) + "\n")
print(f"  read {len(cases)} cases and base_spec() from tests/crds.rs")
PY
then
    fail "could not read the cases from tests/crds.rs"
else
    if out=$(kubectl apply --server-side -f "$WORK/valid-base.json" 2>&1); then
        pass "the base policy of the cases is accepted: $out"
    else
        fail "the base policy of the cases is refused: $out"
    fi
    while IFS=$'\t' read -r path want patch; do
        if out=$(kubectl apply --server-side -f "$path" 2>&1); then
            fail "accepted, should be refused with \"$want\": $patch"
            kubectl delete -f "$path" --wait=false >/dev/null 2>&1
        elif [[ "$out" == *"$want"* ]]; then
            pass "refused ($want): $patch"
        else
            fail "refused, but without \"$want\": $patch: $out"
        fi
    done < "$WORK/cases.tsv"
fi
sed 's/maxUnavailablePercent: 10/maxUnavailablePercent: "ten"/' manifests/examples/balanced.yaml \
    | sed "s/namespace: slurm/namespace: $TESTNS/" > "$WORK/broken.yaml"
if out=$(kubectl apply --server-side -f "$WORK/broken.yaml" 2>&1); then
    fail "a policy with maxUnavailablePercent: \"ten\" was accepted"
elif [[ "$out" == *maxUnavailablePercent* ]]; then
    pass "maxUnavailablePercent: \"ten\" refused: $(one_line 240 <<<"$out")"
else
    fail "maxUnavailablePercent: \"ten\" refused without naming the field: $out"
fi
# NodeMaintenance (tests/crds.rs node_maintenance_node_name_is_immutable)
nm() {
    cat <<EOF
{"apiVersion": "slurm-maint.io/v1alpha1", "kind": "NodeMaintenance",
 "metadata": {"name": "$1", "namespace": "$TESTNS"},
 "spec": {"nodeName": "$2", "policy": "p", "action": "$3", "requestedAt": "2026-01-01T00:00:00Z"}}
EOF
}
if out=$(nm nm1 node1 Reboot | kubectl apply --server-side -f - 2>&1); then
    pass "NodeMaintenance accepted: $out"
    if out=$(nm nm1 node2 Reboot | kubectl apply --server-side -f - 2>&1); then
        fail "NodeMaintenance nodeName changed from node1 to node2"
    elif [[ "$out" == *"nodeName is immutable"* ]]; then
        pass "refused (nodeName is immutable): node1 -> node2"
    else
        fail "nodeName change refused without \"nodeName is immutable\": $out"
    fi
else
    fail "NodeMaintenance refused: $out"
fi
if out=$(nm nm2 node1 OciMaintenance | kubectl apply --server-side -f - 2>&1); then
    fail "OciMaintenance without ociEvent accepted"
elif [[ "$out" == *"requires ociEvent"* ]]; then
    pass "refused (requires ociEvent): action OciMaintenance without ociEvent"
else
    fail "OciMaintenance without ociEvent refused without \"requires ociEvent\": $out"
fi

section "clean up"
# (never the CRDs: install.yaml carries them too)
n=0
for a in "${APPLIED[@]}"; do
    n=$((n + 1))
    if [[ $a == "-f "* ]]; then
        python3 - "${a#-f }" "$WORK/delete-$n.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") != "CustomResourceDefinition"]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
PY
        kubectl delete -f "$WORK/delete-$n.yaml" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    else
        # shellcheck disable=SC2086 # "-k DIR", split on purpose
        kubectl delete $a --ignore-not-found --wait=false >/dev/null 2>&1 || true
    fi
done
kubectl delete namespace "$TESTNS" "${CREATED_NS[@]}" --wait=false >/dev/null 2>&1 || true
echo
echo "manifests: $PASSED passed, $FAILED failed, $SKIPPED skipped"
((FAILED == 0))
