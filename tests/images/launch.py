#!/usr/bin/env python3
"""Start one container the way a container runtime does, from a JSON spec (written by
tests/images/pods.py): a new mount and PID namespace, the image's root filesystem
(read-only if asked) with /proc, a minimal /dev, /sys read-only and the pod's volumes bound
in, then chroot, the capability bounding set cut to what the securityContext keeps, the
supplementary groups, gid and uid, no_new_privs, and execve of the entrypoint with the
container's environment. The network is the host's (loopback stands in for the pod
network). No seccomp profile is applied.

  launch.py SPEC.json     (runs until the container exits; SIGTERM is passed to its PID 1)
"""
import ctypes
import json
import os
import signal
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
CAP_LAST = 40

CAPS = {n: i for i, n in enumerate(
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
    "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
    "SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME "
    "SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG "
    "WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE".split())}
# containerd's default set for a container that drops nothing
DEFAULT_CAPS = ("CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP "
                "NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE").split()


def check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def mount(src, dst, fstype, flags, data=None):
    enc = lambda s: s.encode() if isinstance(s, str) else s
    check(libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)), f"mount {src} on {dst}")


def bind(src, dst, readonly):
    mount(src, dst, None, MS_BIND | MS_REC)
    if readonly:
        mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def container(spec):
    """PID 1 of the new PID namespace: mounts, identity, exec."""
    root = spec["rootfs"]
    bind(root, root, spec["readOnlyRootFilesystem"])
    mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("tmpfs", f"{root}/dev", "tmpfs", MS_NOSUID, "mode=755,size=65536k")
    for dev in ("null", "zero", "full", "random", "urandom", "tty"):
        open(f"{root}/dev/{dev}", "w").close()
        bind(f"/dev/{dev}", f"{root}/dev/{dev}", False)
    os.mkdir(f"{root}/dev/shm")
    mount("shm", f"{root}/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
    for link, to in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                     ("stderr", "/proc/self/fd/2")):
        os.symlink(to, f"{root}/dev/{link}")
    bind("/sys", f"{root}/sys", True)
    for m in spec["mounts"]:  # in order: a mount may sit inside an earlier one
        bind(m["source"], root + m["target"], m["readOnly"])
    os.chroot(root)
    os.chdir(spec.get("workingDir") or "/")
    keep = {CAPS[c] for c in spec["capabilities"]}
    for cap in range(CAP_LAST + 1):
        if cap not in keep:
            rc = libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
            if rc != 0 and ctypes.get_errno() != 22:  # EINVAL: not known to this kernel
                check(rc, f"drop capability {cap}")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    os.setgroups(spec["groups"])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    if spec["noNewPrivs"]:
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    argv = spec["argv"]
    os.execve(argv[0], argv, spec["env"])


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    check(libc.unshare(CLONE_NEWNS | CLONE_NEWPID), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    pid = os.fork()
    if pid == 0:
        try:
            container(spec)
        except BaseException as e:  # noqa: BLE001 - report anything before exec
            print(f"launch.py: cannot start container {spec.get('name')}: {e}", file=sys.stderr, flush=True)
            os._exit(127)
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda signum, _f: os.kill(pid, signum))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    sys.exit(os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8)


if __name__ == "__main__":
    main()
