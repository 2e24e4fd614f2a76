#!/usr/bin/env python3
"""The images as the chart runs them, against a real Slurm cluster and the real API server.

1. `helm install` (helm-sdkpy) of charts/slurm-maint into a fresh namespace of the API
   server, with the agent pointed at the cluster (slurm.conf in a ConfigMap, the munge key
   in a Secret, auth=munge: the chart's munged sidecar), and checks the rendered images are
   the tags tests/images/images.sh built from ./Dockerfile.
2. The rendered Deployments' pods run as a kubelet would run them (class Pod): each
   container from its image (buildah from + mount), the entrypoint/cmd, env and user of the
   image config merged with the container's command/args/env/securityContext, env from
   Secrets and the downward API read from the API server, the pod's volumes (configMap,
   secret and projected volumes written as kubelet's atomic writer does with their modes
   and fsGroup; emptyDirs, tmpfs for medium Memory, subPath), the ServiceAccount token
   from the TokenRequest API (the Deployment's ServiceAccount, automount rules), the
   readiness probes polled; then started by tests/images/launch.py.
3. The agent pod: /healthz, a snapshot of partition `batch`, a reboot of one node that
   comes back with a new boot time; the Slurm version the image carries is the line's.
4. The controller pod with the chart's ServiceAccount token: a monitor-only
   MaintenancePolicy on that agent goes Ready.

  pods.py --line 24.11 --controller-image REF --agent-image REF --buildah "buildah ..." --chart DIR

Environment: SLURM_MAINT_E2E_KUBECONFIG, SLURM_MAINT_KUBECTL (tests/k8s/apiserver.sh env),
SLURM_CONF and SLURM_TEST_DIR of the cluster (its munge key: SLURM_TEST_DIR/munge/munge.key).
"""
import argparse
import asyncio
import base64
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "chart"))
import helm  # noqa: E402  tests/chart/helm.py

CAP_ALL = ("CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP "
           "NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE").split()


def log(msg):
    print(f"pods.py: {msg}", flush=True)


class Fail(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, deadline_s, fn, interval=0.5):
    """Poll fn() until it returns a truthy value; Fail with its last error at the deadline."""
    end = time.monotonic() + deadline_s
    last = None
    while True:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - keep the last error for the message
            last = e
        if time.monotonic() > end:
            raise Fail(f"timed out after {deadline_s} s waiting for {what}" + (f": last error {last}" if last else ""))
        time.sleep(interval)


class Kube:
    def __init__(self):
        self.kubeconfig = os.environ["SLURM_MAINT_E2E_KUBECONFIG"]
        self.kubectl = os.environ.get("SLURM_MAINT_KUBECTL") or subprocess.check_output(
            ["bash", os.path.join(HERE, "..", "k8s", "apiserver.sh"), "kubectl"], text=True).strip()
        with open(self.kubeconfig) as f:
            kc = yaml.safe_load(f)
        cluster = kc["clusters"][0]["cluster"]
        self.server = cluster["server"]
        if "certificate-authority-data" in cluster:
            self.ca = base64.b64decode(cluster["certificate-authority-data"])
        else:
            with open(cluster["certificate-authority"], "rb") as f:
                self.ca = f.read()

    def run(self, *args, input=None):
        p = subprocess.run([self.kubectl, "--kubeconfig", self.kubeconfig, *args], input=input,
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise Fail(f"kubectl {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout

    def get(self, kind, name, ns):
        return json.loads(self.run("-n", ns, "get", kind, name, "-o", "json"))

    def apply(self, obj):
        self.run("apply", "-f", "-", input=json.dumps(obj))


class Image:
    def __init__(self, buildah, ref):
        self.buildah, self.ref = buildah, ref
        out = subprocess.check_output(buildah + ["inspect", "--type", "image", ref], text=True)
        self.config = json.loads(out)["OCIv1"].get("config", {})

    def container(self, name):
        """A fresh working container and its mounted root (the container's writable layer)."""
        subprocess.run(self.buildah + ["rm", name], capture_output=True)
        ctr = subprocess.check_output(self.buildah + ["from", "--pull=never", "--name", name, self.ref], text=True).strip()
        root = subprocess.check_output(self.buildah + ["mount", ctr], text=True).strip()
        return ctr, root


def secret_files(kube, ns, source, kind):
    """{path: bytes} of a configMap or secret volume source (all keys, or its items)."""
    name = source.get("name") or source.get("secretName")
    obj = kube.get(kind, name, ns)
    if kind == "secret":
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    else:
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    items = source.get("items")
    if not items:
        return {k: (v, None) for k, v in data.items()}
    out = {}
    for it in items:
        if it["key"] not in data:
            raise Fail(f"{kind} {ns}/{name} has no key {it['key']}")
        out[it["path"]] = (data[it["key"]], it.get("mode"))
    return out


def write_atomic(dirpath, files, default_mode, fs_group):
    """Kubelet's atomic writer: files in a timestamped dir, `..data` -> it, each key a symlink
    through `..data`; modes from the item or defaultMode; with an fsGroup, group fsGroup
    and the read-only mask 0440 added (pkg/volume SetVolumeOwnership)."""
    os.makedirs(dirpath, exist_ok=True)
    ts = time.strftime("..%Y_%m_%d_%H_%M_%S.000000000", time.gmtime())
    real = os.path.join(dirpath, ts)
    os.mkdir(real)
    for path, (data, mode) in files.items():
        full = os.path.join(real, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
        m = mode if mode is not None else default_mode
        if fs_group is not None:
            os.chown(full, 0, fs_group)
            m |= 0o440
        os.chmod(full, m)
        top = path.split("/")[0]
        if not os.path.lexists(os.path.join(dirpath, top)):
            os.symlink(os.path.join("..data", top), os.path.join(dirpath, top))
    os.symlink(ts, os.path.join(dirpath, "..data"))
    for d in (dirpath, real):
        if fs_group is not None:
            os.chown(d, 0, fs_group)
            os.chmod(d, 0o2000 | 0o755 | 0o550)


class Pod:
    """One pod of a rendered Deployment, its containers started by launch.py."""

    def __init__(self, kube, buildah, deployment, workdir, node_env):
        self.kube, self.buildah = kube, buildah
        self.ns = deployment["metadata"]["namespace"]
        self.name = deployment["metadata"]["name"] + "-img-" + os.urandom(3).hex()
        self.spec = deployment["spec"]["template"]["spec"]
        self.dir = tempfile.mkdtemp(prefix=f"pod-{self.name}-", dir=workdir)
        self.node_env = node_env
        self.procs = {}
        self.ctrs = []
        self.tmpfs = []

    # -- volumes --
    def volumes(self):
        psc = self.spec.get("securityContext") or {}
        fs_group = psc.get("fsGroup")
        vols = {}
        for v in self.spec.get("volumes") or []:
            path = os.path.join(self.dir, "volumes", v["name"])
            os.makedirs(path)
            if "emptyDir" in v:
                if (v["emptyDir"] or {}).get("medium") == "Memory":
                    size = (v["emptyDir"] or {}).get("sizeLimit", "64Mi").replace("Mi", "m").replace("Gi", "g")
                    subprocess.check_call(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path])
                    self.tmpfs.append(path)
                else:
                    os.chmod(path, 0o777)
                if fs_group is not None:
                    os.chown(path, 0, fs_group)
                    os.chmod(path, os.stat(path).st_mode | 0o2000 | 0o770)
                ro = False
            elif "configMap" in v or "secret" in v:
                kind = "configmap" if "configMap" in v else "secret"
                src = v.get("configMap") or v.get("secret")
                write_atomic(path, secret_files(self.kube, self.ns, src, kind), src.get("defaultMode", 0o644), fs_group)
                ro = True
            elif "projected" in v:
                files = {}
                for s in v["projected"]["sources"]:
                    if "configMap" in s:
                        files.update(secret_files(self.kube, self.ns, s["configMap"], "configmap"))
                    elif "secret" in s:
                        files.update(secret_files(self.kube, self.ns, s["secret"], "secret"))
                    else:
                        raise Fail(f"projected source {list(s)} not supported here")
                write_atomic(path, files, v["projected"].get("defaultMode", 0o644), fs_group)
                ro = True
            elif "hostPath" in v:
                os.rmdir(path)
                path = v["hostPath"]["path"]
                ro = False
            else:
                raise Fail(f"volume {v['name']}: kind {list(v)} not supported here")
            vols[v["name"]] = (path, ro)
        return vols

    def service_account(self, vols):
        """The projected token volume kubelet adds when automounting (TokenRequest API)."""
        sa_name = self.spec.get("serviceAccountName") or "default"
        automount = self.spec.get("automountServiceAccountToken")
        if automount is None:
            automount = self.kube.get("serviceaccount", sa_name, self.ns).get("automountServiceAccountToken", True)
        if not automount:
            return None
        token = self.kube.run("-n", self.ns, "create", "token", sa_name, "--duration=1h").strip()
        path = os.path.join(self.dir, "volumes", "kube-api-access")
        write_atomic(path, {"token": (token.encode(), None), "ca.crt": (self.kube.ca, None),
                            "namespace": (self.ns.encode(), None)}, 0o644,
                     (self.spec.get("securityContext") or {}).get("fsGroup"))
        vols["kube-api-access"] = (path, True)
        return {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True}

    # -- containers --
    def env_of(self, c, image):
        env = {}
        for kv in image.config.get("Env") or []:
            k, _, v = kv.partition("=")
            env[k] = v
        env.update(self.node_env)
        env["HOSTNAME"] = self.name
        for e in c.get("env") or []:
            if "value" in e:
                env[e["name"]] = e["value"]
            elif "secretKeyRef" in e["valueFrom"]:
                ref = e["valueFrom"]["secretKeyRef"]
                data = self.kube.get("secret", ref["name"], self.ns).get("data") or {}
                if ref["key"] not in data:
                    raise Fail(f"env {e['name']}: secret {ref['name']} has no key {ref['key']}")
                env[e["name"]] = base64.b64decode(data[ref["key"]]).decode()
            elif "fieldRef" in e["valueFrom"]:
                field = e["valueFrom"]["fieldRef"]["fieldPath"]
                env[e["name"]] = {"metadata.name": self.name, "metadata.namespace": self.ns}[field]
            else:
                raise Fail(f"env {e['name']}: {e['valueFrom']} not supported here")
        return env

    @staticmethod
    def resolve(root, exe, env):
        if "/" in exe:
            return exe
        for d in env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(":"):
            if os.path.isfile(os.path.join(root + d, exe)):
                return os.path.join(d, exe)
        raise Fail(f"{exe}: not found in the image's PATH")

    def identity(self, c, image, root):
        psc = self.spec.get("securityContext") or {}
        sc = c.get("securityContext") or {}
        user = (image.config.get("User") or "0").split(":")
        uid = sc.get("runAsUser", psc.get("runAsUser"))
        gid = sc.get("runAsGroup", psc.get("runAsGroup"))
        if uid is None:
            if not user[0].isdigit():
                raise Fail(f"image user {user[0]} is not numeric")
            uid = int(user[0])
        if gid is None:
            gid = int(user[1]) if len(user) > 1 else 0
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) and uid == 0:
            raise Fail(f"container {c['name']} has runAsNonRoot and image will run as root")
        groups = sorted({g for g in [psc.get("fsGroup"), *(psc.get("supplementalGroups") or [])] if g is not None})
        caps = list(CAP_ALL)
        capsc = sc.get("capabilities") or {}
        if "ALL" in (capsc.get("drop") or []):
            caps = []
        caps = [x for x in caps if x not in (capsc.get("drop") or [])] + list(capsc.get("add") or [])
        return uid, gid, groups, caps, sc

    def start(self, images):
        vols = self.volumes()
        sa_mount = self.service_account(vols)
        hosts = os.path.join(self.dir, "hosts")
        with open(hosts, "w") as f:
            f.write(f"# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t{self.name}\n")
        hostname = os.path.join(self.dir, "hostname")
        with open(hostname, "w") as f:
            f.write(self.name + "\n")
        for c in self.spec["containers"]:
            image = images[c["image"]]
            ctr, root = image.container(f"{self.name}-{c['name']}")
            self.ctrs.append((image, ctr))
            env = self.env_of(c, image)
            if c.get("command"):
                argv = list(c["command"]) + list(c.get("args") or [])
            else:
                argv = list(image.config.get("Entrypoint") or []) + list(c.get("args") or image.config.get("Cmd") or [])
            argv[0] = self.resolve(root, argv[0], env)
            uid, gid, groups, caps, sc = self.identity(c, image, root)
            mounts = [{"source": hosts, "target": "/etc/hosts", "readOnly": False},
                      {"source": hostname, "target": "/etc/hostname", "readOnly": False},
                      {"source": "/etc/resolv.conf", "target": "/etc/resolv.conf", "readOnly": True}]
            vms = list(c.get("volumeMounts") or []) + ([sa_mount] if sa_mount else [])
            for vm in vms:
                src, ro = vols[vm["name"]]
                if vm.get("subPath"):
                    # kubelet: a missing subPath is made as a directory; an existing one
                    # is resolved (symlinks followed inside the volume) and bound itself
                    src = os.path.join(src, vm["subPath"])
                    if not os.path.lexists(src):
                        os.makedirs(src, mode=0o750)
                    src = os.path.realpath(src)
                mounts.append({"source": src, "target": vm["mountPath"], "readOnly": bool(vm.get("readOnly") or ro)})
            # mount points, made in the container's layer before its root goes read-only
            for m in mounts:
                t = root + m["target"]
                if os.path.isdir(m["source"]):
                    os.makedirs(t, exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(t), exist_ok=True)
                    if not os.path.exists(t):
                        open(t, "w").close()
            for d in ("proc", "dev", "sys"):
                os.makedirs(os.path.join(root, d), exist_ok=True)
            spec = {"name": c["name"], "rootfs": root, "readOnlyRootFilesystem": bool(sc.get("readOnlyRootFilesystem")),
                    "mounts": mounts, "workingDir": c.get("workingDir") or image.config.get("WorkingDir"),
                    "capabilities": caps, "groups": groups, "uid": uid, "gid": gid,
                    "noNewPrivs": sc.get("allowPrivilegeEscalation") is False, "argv": argv, "env": env}
            spec_path = os.path.join(self.dir, f"{c['name']}.json")
            with open(spec_path, "w") as f:
                json.dump(spec, f)
            logf = open(os.path.join(self.dir, f"{c['name']}.log"), "wb")
            log(f"{self.name}/{c['name']}: {c['image']} as {uid}:{gid} groups {groups}, "
                f"{'read-only root' if spec['readOnlyRootFilesystem'] else 'writable root'}, caps {caps or 'none'}: {shlex.join(argv)}")
            self.procs[c["name"]] = (subprocess.Popen([sys.executable, os.path.join(HERE, "launch.py"), spec_path],
                                                      stdout=logf, stderr=subprocess.STDOUT), logf.name)

    def logs(self, name, lines=40):
        with open(self.procs[name][1], errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def check_running(self):
        for name, (p, _) in self.procs.items():
            if p.poll() is not None:
                raise Fail(f"container {self.name}/{name} exited with {p.returncode}:\n{self.logs(name)}")

    def wait_ready(self, deadline_s=90):
        for c in self.spec["containers"]:
            probe = c.get("readinessProbe")
            if not probe:
                continue
            ports = {p["name"]: p["containerPort"] for p in c.get("ports") or []}
            get = probe["httpGet"]
            port = ports.get(get["port"], get["port"])
            url = f"http://127.0.0.1:{port}{get['path']}"

            def ready():
                self.check_running()
                with urllib.request.urlopen(url, timeout=probe.get("timeoutSeconds", 1)) as r:
                    return 200 <= r.status < 400
            try:
                wait_for(f"{self.name}/{c['name']} ready ({url})", deadline_s, ready)
            except Fail as e:
                raise Fail(f"{e}\n--- {c['name']} log:\n{self.logs(c['name'])}") from None
            log(f"{self.name}/{c['name']}: ready ({url})")

    def stop(self):
        for name, (p, _) in self.procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, (p, _) in self.procs.items():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for path in self.tmpfs:
            subprocess.run(["umount", path])
        for image, ctr in self.ctrs:
            subprocess.run(self.buildah + ["umount", ctr], capture_output=True)
            subprocess.run(self.buildah + ["rm", ctr], capture_output=True)


def http(method, url, token=None, body=None, timeout=60):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--line", required=True)
    ap.add_argument("--controller-image", required=True)
    ap.add_argument("--agent-image", required=True)
    ap.add_argument("--buildah", required=True)
    ap.add_argument("--chart", required=True)
    a = ap.parse_args()
    buildah = shlex.split(a.buildah)
    kube = Kube()
    ns = "images-" + a.line.replace(".", "-")
    release = "sm"
    work = tempfile.mkdtemp(prefix="slurm-maint-pods-")
    pods = []
    installed = False
    t0 = time.monotonic()
    try:
        kube.run("delete", "namespace", ns, "--ignore-not-found", "--wait=true")
        kube.run("create", "namespace", ns)
        # the site's slurm.conf, as a ConfigMap: the test cluster's, without its AuthInfo
        # (a munge socket path of the host); the pod's munged serves munge's default socket
        with open(os.environ["SLURM_CONF"]) as f:
            conf = "".join(line for line in f if not line.startswith("AuthInfo="))
        with open(os.path.join(work, "slurm.conf"), "w") as f:
            f.write(conf)
        kube.run("-n", ns, "create", "configmap", "slurm-config", f"--from-file=slurm.conf={work}/slurm.conf")
        key = os.path.join(os.environ["SLURM_TEST_DIR"], "munge", "munge.key")
        kube.run("-n", ns, "create", "secret", "generic", "munge-key", f"--from-file=munge.key={key}")
        agent_port, metrics_port = free_port(), free_port()
        values = {
            "controller": {"metricsPort": metrics_port, "watchNamespace": ns},
            "rbac": {"policyNamespaces": [ns]},
            "podDisruptionBudget": {"enabled": False},
            "agent": {
                "port": agent_port,
                # the test cluster's SlurmUser is root: only root may reboot its nodes
                "runAsUser": 0, "runAsGroup": 0,
                "slurm": {"configMap": "slurm-config", "auth": "munge", "keySecret": {"name": "munge-key"}},
                "logLevel": "info,slurm_maint=debug",
            },
        }
        # the chart's default Slurm line is left to the chart: its default images must be
        # the ones built
        with open(os.path.join(a.chart, "values.yaml")) as f:
            default_line = str(yaml.safe_load(f)["agent"]["slurmVersion"])
        if a.line != default_line:
            values["agent"]["slurmVersion"] = a.line
        os.environ["KUBECONFIG"] = kube.kubeconfig
        rel = asyncio.run(helm.helm.Install(helm.config(ns)).run(release, a.chart, values=values, wait=False, timeout=120))
        installed = True
        docs = [d for d in yaml.safe_load_all(rel["manifest"]) if d]
        deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
        for d in deps.values():
            d["metadata"].setdefault("namespace", ns)
        agent_dep = next(d for n, d in deps.items() if n.endswith("-agent"))
        ctl_dep = next(d for n, d in deps.items() if n.endswith("-controller"))
        want = {a.agent_image, a.controller_image}
        refs = {c["image"] for d in deps.values() for c in d["spec"]["template"]["spec"]["containers"]}
        if refs != want:
            raise Fail(f"the chart's images {sorted(refs)} are not the built ones {sorted(want)}")
        log(f"chart installed in {ns}; its images are the built ones: {sorted(refs)}"
            + (" (the chart's default images)" if a.line == default_line else ""))
        images = {r: Image(buildah, r) for r in refs}

        host, port = kube.server.removeprefix("https://").rsplit(":", 1)
        node_env = {"KUBERNETES_SERVICE_HOST": host.strip("[]"), "KUBERNETES_SERVICE_PORT": port,
                    "KUBERNETES_SERVICE_PORT_HTTPS": port, "KUBERNETES_PORT": f"tcp://{host}:{port}"}

        # -- the agent pod: agent + munged sidecar
        agent = Pod(kube, buildah, agent_dep, work, node_env)
        pods.append(agent)
        agent.start(images)
        agent.wait_ready()
        ctr = agent.ctrs[0][1]
        mnt = subprocess.check_output(buildah + ["mount", ctr], text=True).strip()
        with open(os.path.join(mnt, "etc/slurm-maint-slurm-version")) as f:
            slurm_version = f.read().strip()
        if not slurm_version.startswith(a.line + "."):
            raise Fail(f"agent image carries Slurm {slurm_version}, not {a.line}")
        token = base64.b64decode(kube.get("secret", "slurm-maint-agent-token", ns)["data"]["token"]).decode()
        base = f"http://127.0.0.1:{agent_port}"
        status, snap = http("GET", f"{base}/v1/partitions/batch/snapshot", token)
        if status != 200:
            raise Fail(f"snapshot: {status} {snap}\n--- agent log:\n{agent.logs('agent')}")
        nodes = {n["name"]: n for n in snap["nodes"]}
        log(f"snapshot of batch through the image (Slurm {slurm_version}): {len(nodes)} nodes, "
            f"{len(snap.get('jobs') or [])} jobs, states {sorted({str(n['state']) for n in nodes.values()})}")
        if not nodes:
            raise Fail(f"snapshot without nodes: {snap}")
        status, body = http("GET", f"{base}/v1/partitions/batch/snapshot")
        if status != 401:
            raise Fail(f"snapshot without a token answered {status}, not 401")
        # a node in service and idle (earlier suites may leave others drained or reserved)
        idle = sorted(n for n, v in nodes.items() if v["state"] == {"base": "IDLE", "flags": []} and not v.get("reservation"))
        if not idle:
            raise Fail(f"no idle node in service to reboot: {json.dumps(snap['nodes'])}")
        victim = idle[-1]
        before = nodes[victim]["boot_time"]
        status, body = http("POST", f"{base}/v1/nodes/{victim}/reboot", token, {"reason": "image test reboot"})
        if status != 200:
            raise Fail(f"reboot {victim}: {status} {body}\n--- agent log:\n{agent.logs('agent')}")
        log(f"reboot {victim} accepted: {body}")

        def rebooted():
            agent.check_running()
            s, snap = http("GET", f"{base}/v1/partitions/batch/snapshot", token)
            if s != 200:
                raise Fail(f"snapshot {s}: {snap}")
            n = next(n for n in snap["nodes"] if n["name"] == victim)
            state = json.dumps(n["state"])
            return n if n["boot_time"] != before and "REBOOT" not in state.upper() and "IDLE" in state.upper() else None
        n = wait_for(f"{victim} back from its reboot with a new boot time", 150, rebooted, interval=1)
        log(f"{victim} rebooted: boot time {before} -> {n['boot_time']}, state {n['state']}")

        # -- the controller pod, with the chart's ServiceAccount token
        ctl = Pod(kube, buildah, ctl_dep, work, node_env)
        pods.append(ctl)
        ctl.start(images)
        ctl.wait_ready()
        policy = {
            "apiVersion": "slurm-maint.io/v1alpha1", "kind": "MaintenancePolicy",
            "metadata": {"name": "images-monitor", "namespace": ns},
            "spec": {"partition": "batch", "interval": "10s",
                     "agent": {"url": base, "tokenSecretRef": {"name": "slurm-maint-agent-token"}}},
        }
        kube.apply(policy)

        def ready():
            ctl.check_running()
            agent.check_running()
            st = kube.get("maintenancepolicy", "images-monitor", ns).get("status") or {}
            conds = {c["type"]: c for c in st.get("conditions") or []}
            if conds.get("Ready", {}).get("status") == "True":
                return conds
            return None
        try:
            conds = wait_for("the monitor-only policy Ready", 120, ready, interval=1)
        except Fail as e:
            st = kube.get("maintenancepolicy", "images-monitor", ns).get("status")
            raise Fail(f"{e}\nstatus: {json.dumps(st)}\n--- controller log:\n{ctl.logs('controller')}") from None
        log("policy images-monitor Ready: " + ", ".join(f"{t}={c['status']}/{c.get('reason')}" for t, c in sorted(conds.items())))
        forbidden = [line for line in ctl.logs("controller", 400).splitlines() if "403" in line or "forbidden" in line.lower()]
        if forbidden:
            raise Fail("the controller met 403s with the chart's ServiceAccount:\n" + "\n".join(forbidden[:10]))
        # -- the chart's default user (401, non-root): the same pod reads Slurm; the
        # test cluster's SlurmUser is root, so Slurm itself refuses it a reboot
        agent.stop()
        pods.remove(agent)
        values["agent"].pop("runAsUser")
        values["agent"].pop("runAsGroup")
        rel = asyncio.run(helm.helm.Upgrade(helm.config(ns)).run(release, a.chart, values=values, wait=False, timeout=120))
        dep = next(d for d in yaml.safe_load_all(rel["manifest"]) if d and d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-agent"))
        dep["metadata"].setdefault("namespace", ns)
        agent = Pod(kube, buildah, dep, work, node_env)
        pods.append(agent)
        agent.start(images)
        agent.wait_ready()
        status, snap = http("GET", f"{base}/v1/partitions/batch/snapshot", token)
        if status != 200 or len(snap["nodes"]) != len(nodes):
            raise Fail(f"snapshot as uid 401: {status} {snap}\n--- agent log:\n{agent.logs('agent')}")
        status, body = http("POST", f"{base}/v1/nodes/{victim}/reboot", token, {"reason": "image test reboot"})
        if status == 200 or "denied" not in json.dumps(body).lower():
            raise Fail(f"reboot as uid 401 on a cluster whose SlurmUser is root: {status} {body} (want Slurm's refusal)")
        log(f"as the chart's default uid 401: snapshot of {len(snap['nodes'])} nodes; reboot refused by Slurm ({status}: {str(body)[:160]})")
        log(f"Slurm {a.line}: images ran as the chart runs them ({time.monotonic() - t0:.0f} s)")
        return 0
    except (Fail, helm.helm.HelmError) as e:
        print(f"pods.py: FAIL (Slurm {a.line}): {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        # the policy first, while the controller runs to take its finalizer off
        try:
            kube.run("-n", ns, "delete", "maintenancepolicy", "--all", "--timeout=60s")
        except Fail as e:
            print(f"pods.py: cleanup: {e}; taking the finalizers off", file=sys.stderr)
            for name in kube.run("-n", ns, "get", "maintenancepolicy", "-o", "name").split():
                kube.run("-n", ns, "patch", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        for p in reversed(pods):
            p.stop()
        if installed:
            try:
                asyncio.run(helm.helm.Uninstall(helm.config(ns)).run(release, wait=False, timeout=120))
            except Exception as e:  # noqa: BLE001
                print(f"pods.py: cleanup: {e}", file=sys.stderr)
        subprocess.run([kube.kubectl, "--kubeconfig", kube.kubeconfig, "delete", "namespace", ns, "--wait=false"],
                       capture_output=True)
        subprocess.run(["rm", "-rf", "--one-file-system", work])


if __name__ == "__main__":
    sys.exit(main())
