#!/usr/bin/env python3
"""slurm-maint's chart rendered together with Slinky's and Soperator's, on the real API
server (the Helm library of helm-sdkpy renders by installing), with the values files in
tests/chart/next-to/: the agent as a sidecar of Slinky's slurmctld pod and of Soperator's
login pods. Their CRDs are installed too, so the server validates their custom resources;
their operators do not run (nothing here schedules pods), so the pod the agent ends up in
is the custom resource's pod template plus what the operator adds, which is taken from the
operator's source at the tested commit (OPERATOR_* below). The checks: the sidecar is the
agent image of the cluster's Slurm line, runs natively (restartPolicy Always), finds
slurm.conf at SLURM_CONF in a volume that has it, reaches the cluster's auth (slurm.key
next to it for Slinky's auth/slurm, the munge socket for Soperator's auth/munge), runs as
the SlurmUser, takes its token from a Secret that exists, and slurm-maint's Service
reaches its port on those pods.

  next_to.py        (SLURM_MAINT_E2E_KUBECONFIG, SLURM_MAINT_KUBECTL)

The charts come from git repositories at pinned commits: $SLURM_MAINT_NEXT_TO_SLINKY /
$SLURM_MAINT_NEXT_TO_SOPERATOR (a git dir or checkout), else
~/.cache/slurm-maint/next-to/<name>.git, else cloned from GitHub into that cache. Offline,
seed the cache once: git clone --bare <a copy of the repository> ~/.cache/slurm-maint/next-to/<name>.git
"""
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import helm  # noqa: E402  tests/chart/helm.py

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
CACHE = os.environ.get("SLURM_MAINT_CACHE") or os.path.join(os.environ.get("HOME", "/root"), ".cache", "slurm-maint")
OURS = os.path.join(REPO, "charts", "slurm-maint")
VALUES = os.path.join(HERE, "next-to")
TOKEN_SECRET = "slurm-maint-agent-token"

SOURCES = {
    "slinky": ("slurm-operator", "https://github.com/SlinkyProject/slurm-operator",
               "f2ed3fc5325271cef6311c1f92c6c75efe122bb1", ["helm/slurm", "helm/slurm-operator-crds"]),
    "soperator": ("soperator", "https://github.com/nebius/soperator",
                  "c238d993341a9f52b132062fbc3cb22f0fb63578", ["helm/slurm-cluster", "helm/soperator-crds"]),
}

# What Slinky's operator adds to the slurmctld pod (internal/builder/controllerbuilder/
# controller_app.go, common/const.go at the pinned commit): volume -> files it provides,
# the pod's user, the pods' labels (Controller name as instance).
OPERATOR_SLINKY = {
    "volumes": {"slurm-etc": {"slurm.conf", "slurm.key", "jwt.key"}, "slurm-authsocket": set()},
    "runAsUser": 401, "fsGroup": 401, "auth": "auth/slurm",
    "labels": lambda name: {"app.kubernetes.io/name": "slurmctld", "app.kubernetes.io/instance": name},
}
# What Soperator's operator adds to the login pods (internal/render/login/volume.go,
# statefulset.go, common/volume.go, common/label.go, consts at the pinned commit): `jail`
# (the shared root, Slurm's config in etc/slurm), `munge-socket` (emptyDir, its munge
# container's socket at /run/munge/munge.socket.2), SlurmUser root, auth/munge.
OPERATOR_SOPERATOR = {
    "volumes": {"jail": {"etc/slurm/slurm.conf"}, "munge-socket": {"munge.socket.2"}},
    "runAsUser": 0, "auth": "auth/munge",
    "labels": lambda name: {"app.kubernetes.io/name": "slurmcluster", "app.kubernetes.io/instance": name,
                            "app.kubernetes.io/component": "login"},
}

FAILS = []


def ok(msg):
    print(f"  ok   {msg}", flush=True)


def fail(msg):
    print(f"  FAIL {msg}", flush=True)
    FAILS.append(msg)


def check(cond, msg):
    (ok if cond else fail)(msg)
    return cond


class Kube:
    def __init__(self):
        self.kubeconfig = os.environ["SLURM_MAINT_E2E_KUBECONFIG"]
        self.kubectl = os.environ.get("SLURM_MAINT_KUBECTL") or subprocess.check_output(
            ["bash", os.path.join(REPO, "tests", "k8s", "apiserver.sh"), "kubectl"], text=True).strip()

    def run(self, *args, check=True):
        p = subprocess.run([self.kubectl, "--kubeconfig", self.kubeconfig, *args], capture_output=True, text=True)
        if check and p.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout

    def get(self, *args):
        return json.loads(self.run("get", *args, "-o", "json"))


class Unavailable(Exception):
    """The other project's charts cannot be had here (no cached copy, GitHub unreachable)."""


def charts(name, dest):
    """The pinned commit's chart directories of SOURCES[name], extracted under dest."""
    repo_name, url, commit, paths = SOURCES[name]
    src = os.environ.get(f"SLURM_MAINT_NEXT_TO_{name.upper()}") or os.path.join(CACHE, "next-to", f"{repo_name}.git")
    if not os.path.exists(src):
        os.makedirs(os.path.dirname(src), exist_ok=True)
        p = subprocess.run(["git", "clone", "--bare", "--quiet", url, src], capture_output=True, text=True)
        if p.returncode != 0:
            raise Unavailable(f"no {repo_name} charts: {src} missing and cloning {url} failed ({p.stderr.strip()}); "
                              f"seed it: git clone --bare <a copy of {url}> {src}")
    archive = subprocess.run(["git", f"--git-dir={src}" if not os.path.isdir(os.path.join(src, ".git")) else f"--git-dir={src}/.git",
                              "archive", commit, *paths], capture_output=True)
    if archive.returncode != 0:
        raise RuntimeError(f"{src}: commit {commit} of {url} not there: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", dest], input=archive.stdout, check=True)
    with open(os.path.join(dest, paths[0], "Chart.yaml")) as f:
        meta = yaml.safe_load(f)
    print(f"-- {repo_name} {commit[:8]} ({url}): chart {meta['name']} {meta['version']}, appVersion {meta.get('appVersion')}")
    return meta


def load(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def install(release, chart, ns, values):
    r = asyncio.run(helm.helm.Install(helm.config(ns)).run(release, chart, values=values, wait=False, timeout=180))
    return [d for d in yaml.safe_load_all(r["manifest"]) if d]


def uninstall(release, ns):
    try:
        asyncio.run(helm.helm.Uninstall(helm.config(ns)).run(release, wait=False, timeout=180))
    except helm.helm.HelmError as e:
        print(f"  (uninstall {release}: {e})")


def our_agent_image(line):
    meta = load(os.path.join(OURS, "Chart.yaml"))
    values = load(os.path.join(OURS, "values.yaml"))
    return f"{values['agent']['image']['repository']}:{meta['appVersion']}-slurm{line}"


def check_sidecar(kind, c, volumes, pod_user, line, ns, kube, auth_check):
    """The agent container `c` in a pod with `volumes` (name -> files it provides)."""
    check(c.get("restartPolicy") == "Always", f"{kind}: agent is a native sidecar (initContainer, restartPolicy Always)")
    want = our_agent_image(line)
    check(c.get("image") == want, f"{kind}: image {c.get('image')} is the agent image of Slurm {line} ({want})")
    check((c.get("args") or [])[:1] == ["agent"] and not c.get("command"),
          f"{kind}: runs the image's entrypoint with `agent` ({c.get('args')})")
    env = {e["name"]: e for e in c.get("env") or []}
    conf = (env.get("SLURM_CONF") or {}).get("value", "/etc/slurm/slurm.conf")
    mounts = c.get("volumeMounts") or []
    conf_mount = next((m for m in mounts if conf.startswith(m["mountPath"].rstrip("/") + "/")), None)
    if check(conf_mount is not None, f"{kind}: SLURM_CONF={conf} lies in a mount ({conf_mount and conf_mount['mountPath']})"):
        vol = conf_mount["name"]
        rel = os.path.relpath(conf, conf_mount["mountPath"])
        if conf_mount.get("subPath"):
            rel = os.path.join(conf_mount["subPath"], rel)
        check(vol in volumes and rel in volumes[vol],
              f"{kind}: volume {vol} of the pod provides {rel} (the operator's slurm.conf)")
        check(conf_mount.get("readOnly") is True, f"{kind}: Slurm config mounted read-only")
    auth_check(c, mounts)
    tok = (env.get("SLURM_MAINT_AGENT_TOKEN") or {}).get("valueFrom", {}).get("secretKeyRef")
    if check(tok is not None, f"{kind}: token from a Secret ({tok})"):
        s = kube.get("secret", tok["name"], "-n", ns)
        check(tok["key"] in (s.get("data") or {}), f"{kind}: Secret {ns}/{tok['name']} (slurm-maint's release) has key {tok['key']}")
    uid = (c.get("securityContext") or {}).get("runAsUser", pod_user)
    check(uid == pod_user, f"{kind}: runs as uid {uid}, the cluster's SlurmUser ({pod_user})")
    sc = c.get("securityContext") or {}
    check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False,
          f"{kind}: read-only root, no privilege escalation")


def check_service(kind, docs, labels, port, ns, kube):
    svc = next((d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("-agent")), None)
    if not check(svc is not None, f"{kind}: slurm-maint's chart renders a Service for the sidecar"):
        return
    stored = kube.get("service", svc["metadata"]["name"], "-n", ns)
    sel = stored["spec"].get("selector") or {}
    check(sel and all(labels.get(k) == v for k, v in sel.items()),
          f"{kind}: Service {svc['metadata']['name']} selects the pods the operator labels {labels} ({sel})")
    target = stored["spec"]["ports"][0]["targetPort"]
    check(target == port, f"{kind}: Service targets the sidecar's port {port} ({target})")


def slinky(kube, work):
    meta = charts("slinky", work)
    ns = "next-to-slinky"
    kube.run("delete", "namespace", ns, "--ignore-not-found", "--wait=true")
    kube.run("create", "namespace", ns)
    line = str(meta["appVersion"])
    try:
        install("slinky-crds", os.path.join(work, "helm/slurm-operator-crds"), ns, None)
        ok("Slinky's CRDs installed (helm/slurm-operator-crds)")
        docs = install("slurm", os.path.join(work, "helm/slurm"), ns, load(os.path.join(VALUES, "slinky-slurm.yaml")))
        ok(f"Slinky's slurm chart installed with next-to/slinky-slurm.yaml: {', '.join(sorted({d['kind'] for d in docs}))}")
        ours = install("slurm-maint", OURS, ns, load(os.path.join(VALUES, "slinky-slurm-maint.yaml")))
        ok(f"slurm-maint installed beside it with next-to/slinky-slurm-maint.yaml: {len(ours)} objects, "
           f"no agent Deployment: {not any(d['kind'] == 'Deployment' and d['metadata']['name'].endswith('-agent') for d in ours)}")
        ctl = next(d for d in docs if d["kind"] == "Controller")
        stored = kube.get("controllers.slinky.slurm.net", ctl["metadata"]["name"], "-n", ns)
        spec = stored["spec"]["template"]["spec"]
        c = next((x for x in spec.get("initContainers") or [] if x["name"] == "slurm-maint-agent"), None)
        if not check(c is not None, "Slinky: the Controller the server stored has the agent in its pod template"):
            return
        volumes = dict(OPERATOR_SLINKY["volumes"])
        for v in spec.get("volumes") or []:
            volumes.setdefault(v["name"], set())
        key_ref = stored["spec"]["slurmKeyRef"]
        key = kube.get("secret", key_ref["name"], "-n", ns)
        check(key_ref["key"] in (key.get("data") or {}), f"Slinky: slurm.key Secret {key_ref['name']} exists (the chart's)")

        def auth(c, mounts):
            etc = next((m for m in mounts if m["name"] == "slurm-etc"), None)
            check(etc is not None and etc["mountPath"] == "/etc/slurm",
                  f"Slinky: {OPERATOR_SLINKY['auth']}: slurm.key at /etc/slurm/slurm.key, as slurmctld has it "
                  f"(fsGroup {OPERATOR_SLINKY['fsGroup']}: readable)")
            sock = next((m for m in mounts if m["name"] == "slurm-authsocket"), None)
            check(sock is not None and sock["mountPath"] == "/run/slurmctld", "Slinky: slurmctld's auth socket at /run/slurmctld")
        check_sidecar("Slinky", c, volumes, OPERATOR_SLINKY["runAsUser"], line, ns, kube, auth)
        port = next(p["containerPort"] for p in c["ports"])
        check_service("Slinky", ours, OPERATOR_SLINKY["labels"](ctl["metadata"]["name"]), port, ns, kube)
    finally:
        for r in ("slurm-maint", "slurm", "slinky-crds"):
            uninstall(r, ns)
        kube.run("delete", "namespace", ns, "--wait=false", check=False)


def soperator(kube, work):
    meta = charts("soperator", work)
    ns = "next-to-soperator"
    kube.run("delete", "namespace", ns, "--ignore-not-found", "--wait=true")
    kube.run("create", "namespace", ns)
    crd = os.path.join(work, "helm/soperator-crds/templates/slurmcluster-crd.yaml")
    try:
        # soperator-crds cannot be installed by Helm: its release record (the 3.5 MB CRD)
        # exceeds the 1 MiB a release Secret may hold; the template has no directives, so
        # it is applied as it is
        with open(crd) as f:
            check("{{" not in f.read(), "Soperator: soperator-crds' template is plain YAML (applied with kubectl: too big for a Helm release)")
        kube.run("apply", "--server-side", "-f", crd)
        deadline = time.monotonic() + 60
        while kube.run("get", "crd/slurmclusters.slurm.nebius.ai", "-o",
                       "jsonpath={.status.conditions[?(@.type=='Established')].status}", check=False) != "True":
            if time.monotonic() > deadline:
                raise RuntimeError("the SlurmCluster CRD is not Established after 60 s")
            time.sleep(0.5)
        ok("Soperator's SlurmCluster CRD established")
        values = load(os.path.join(VALUES, "soperator-slurm-cluster.yaml"))
        docs = install("soperator", os.path.join(work, "helm/slurm-cluster"), ns, values)
        ok(f"Soperator's slurm-cluster chart installed with next-to/soperator-slurm-cluster.yaml: "
           f"{', '.join(sorted({d['kind'] for d in docs}))}")
        ours = install("slurm-maint", OURS, ns, load(os.path.join(VALUES, "soperator-slurm-maint.yaml")))
        ok(f"slurm-maint installed beside it with next-to/soperator-slurm-maint.yaml: {len(ours)} objects")
        sc = next(d for d in docs if d["kind"] == "SlurmCluster")
        stored = kube.get("slurmclusters.slurm.nebius.ai", sc["metadata"]["name"], "-n", ns)
        login = stored["spec"]["slurmNodes"]["login"]
        c = next((x for x in login.get("customInitContainers") or [] if x["name"] == "slurm-maint-agent"), None)
        if not check(c is not None, "Soperator: the SlurmCluster the server stored has the agent among the login pods' init containers"):
            return
        # its images are tagged ...-slurm<version>, e.g. munge:5.0.0-slurm26.05.3-nebius-2
        lines = set(re.findall(r"-slurm(\d+\.\d+)", json.dumps(stored["spec"])))
        line = lines.pop() if len(lines) == 1 else "?"
        check(line != "?", f"Soperator: its Slurm line is {line} (from its images' tags)")

        def auth(c, mounts):
            sock = next((x for x in mounts if x["name"] == "munge-socket"), None)
            check(sock is not None and sock["mountPath"] == "/run/munge",
                  f"Soperator: {OPERATOR_SOPERATOR['auth']}: the munge container's socket at /run/munge/munge.socket.2 "
                  f"(munge's default, which slurm.conf's AuthType=auth/munge uses)")
        check_sidecar("Soperator", c, OPERATOR_SOPERATOR["volumes"], OPERATOR_SOPERATOR["runAsUser"], line, ns, kube, auth)
        port = next(p["containerPort"] for p in c["ports"])
        check_service("Soperator", ours, OPERATOR_SOPERATOR["labels"](sc["metadata"]["name"]), port, ns, kube)
    finally:
        for r in ("slurm-maint", "soperator"):
            uninstall(r, ns)
        kube.run("delete", "namespace", ns, "--wait=false", check=False)
        kube.run("delete", "-f", crd, "--wait=false", "--ignore-not-found", check=False)


def main():
    os.environ["KUBECONFIG"] = os.environ["SLURM_MAINT_E2E_KUBECONFIG"]
    kube = Kube()
    skipped = []
    for name, fn in (("slinky", slinky), ("soperator", soperator)):
        with tempfile.TemporaryDirectory() as work:
            try:
                fn(kube, work)
            except Unavailable as e:
                # Their charts live only on GitHub: a machine that reaches neither GitHub
                # nor a cached clone cannot run this check, and says so loudly.
                print(f"  SKIPPED {name}: {e}")
                skipped.append(name)
            except (RuntimeError, helm.helm.HelmError, StopIteration, KeyError, subprocess.CalledProcessError) as e:
                fail(f"{name}: {type(e).__name__}: {e}")
    note = f" ({', '.join(skipped)} SKIPPED: charts unavailable)" if skipped else ""
    print(f"next to Slinky and Soperator: {'all passed' if not FAILS else f'{len(FAILS)} failed'}{note}")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
