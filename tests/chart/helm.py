#!/usr/bin/env python3
"""Helm, through the real Helm library (PyPI `helm-sdkpy`: Helm v4 built as a shared library,
loaded with cffi). Used by tests/chart/check.sh; also handy by hand.

  helm.py lint CHART
  helm.py install|upgrade RELEASE CHART NAMESPACE [VALUES.yaml ...]   (KUBECONFIG)
  helm.py uninstall RELEASE NAMESPACE
  helm.py render-install RELEASE CHART NAMESPACE VALUES.yaml OUT       (install.yaml)

install/upgrade print the release as JSON (manifest, notes, ...) on stdout; errors go to
stderr with exit status 1.
"""
import asyncio
import json
import os
import sys

try:
    import helm_sdkpy as helm
    from helm_sdkpy import chart as helm_chart
except ImportError:  # pragma: no cover
    sys.exit("helm-sdkpy is missing: pip install --ignore-requires-python helm-sdkpy")
import yaml  # PyYAML


def config(namespace="default"):
    return helm.Configuration(namespace=namespace, kubeconfig=os.environ.get("KUBECONFIG"))


def load_values(paths):
    values = {}
    for p in paths:
        with open(p) as f:
            merge(values, yaml.safe_load(f) or {})
    return values


def merge(into, other):
    for k, v in other.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = v


def release_json(r):
    info = r.get("info")
    if isinstance(info, str):  # some versions return nested objects as text
        info = {"raw": info}
    return {"name": r.get("name"), "version": r.get("version"), "namespace": r.get("namespace"),
            "manifest": r.get("manifest", ""), "notes": (info or {}).get("notes", ""),
            "status": (info or {}).get("status")}


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd = argv[1]
    try:
        if cmd == "lint":
            r = asyncio.run(helm_chart.Lint(config()).run(argv[2]))
            print(json.dumps(r, indent=1))
            # Severity: 1 info, 2 warning, 3 error.
            return 1 if r.get("Errors") or any(m["Severity"] >= 3 for m in r.get("Messages") or []) else 0
        if cmd in ("install", "upgrade"):
            release, chart, ns, *vals = argv[2:]
            action = helm.Install if cmd == "install" else helm.Upgrade
            r = asyncio.run(action(config(ns)).run(release, chart, values=load_values(vals) or None,
                                                   wait=False, timeout=120))
            print(json.dumps(release_json(r)))
            return 0
        if cmd == "uninstall":
            release, ns = argv[2:]
            asyncio.run(helm.Uninstall(config(ns)).run(release, wait=False, timeout=120))
            return 0
        if cmd == "render-install":
            release, chart, ns, vals, out = argv[2:]
            r = asyncio.run(helm.Upgrade(config(ns)).run(release, chart, values=load_values([vals]),
                                                         wait=False, timeout=120))
            write_install(r["manifest"], chart, ns, out)
            return 0
    except helm.HelmError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    sys.exit(__doc__)


def write_install(manifest, chart, ns, out):
    """manifests/install.yaml: namespace, CRDs, then the release's manifest."""
    crd_dir = os.path.join(chart, "crds")
    parts = [
        "# slurm-maint: plain-YAML install, rendered from charts/slurm-maint with\n"
        "# tests/chart/install-values.yaml (release `slurm-maint`, namespace `" + ns + "`).\n"
        "# Regenerate: bash tests/chart/check.sh --update-install (needs a test API server).\n"
        "# Before applying, create the agent token Secret and point the agent at Slurm:\n"
        "#   kubectl create namespace " + ns + "\n"
        "#   kubectl -n " + ns + " create secret generic slurm-maint-agent-token \\\n"
        "#     --from-literal=token=\"$(head -c 32 /dev/urandom | base64 | tr -d '/+=')\"\n"
        "#   kubectl apply -f manifests/install.yaml   (see docs/operations.md)\n",
        "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n",
    ]
    for f in sorted(os.listdir(crd_dir)):
        with open(os.path.join(crd_dir, f)) as fh:
            text = fh.read()
        parts.append(text if text.startswith("---") else "---\n" + text)
    body = manifest.strip("\n") + "\n"
    parts.append(body if body.startswith("---") else "---\n" + body)
    with open(out, "w") as fh:
        fh.write("".join(p if p.endswith("\n") else p + "\n" for p in parts))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
