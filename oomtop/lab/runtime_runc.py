"""``--runtime runc``: every container a real OCI container, run by runc from a bundle laid out like containerd's.

Each container (and each pod's sandbox) gets ``<lab dir>/run/containerd/io.containerd.runtime.v2.task/k8s.io/<id>/
config.json`` with containerd's CRI annotations, ``linux.cgroupsPath`` set to the lab's container cgroup (runc
creates it and applies the container's memory limit, and on cgroup v2 ``memory.oom.group``, as it does for
containerd) and the host's ``/`` as a read-only rootfs.  The sandbox owns the pod's pid, ipc, uts and network
namespaces; the containers join them (a pod with ``shareProcessNamespace``: the pause process is pid 1, so a
killed hog takes nobody else with it) and get mount namespaces of their own.  A container's first process is
``runc run --detach``; later ones are ``runc exec --detach``, as ``kubectl exec`` would do.

runc cannot pivot_root onto ``/`` itself, so the rootfs is a bind mount of ``/`` at ``<lab dir>/rootfs``, made in
a private mount namespace of the lab process: no mount is ever visible on (or left behind on) the host.  runc's
state lives under ``<lab dir>/runc`` (``runc --root``), apart from any other runc user on the machine.  As
containerd-shim does, the lab is its containers' subreaper and reaps their processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import sys

from oomtop.lab import LabError, bundle
from oomtop.lab.node import LabRuntimeError
from oomtop.lab.oci import oci_spec
from oomtop.lab.procs import LabProcess, hog_env, package_root, start_ticks
from oomtop.lab.runtime import Container, cri_annotations

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
PR_SET_CHILD_SUBREAPER = 36
RUNC_TIMEOUT_S = 30.0


def runc_path() -> str | None:
    return shutil.which("runc") or next((p for p in ("/usr/sbin/runc", "/usr/bin/runc") if os.access(p, os.X_OK)), None)


def _mount_points() -> list[str]:
    points = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 4:
                    points.append(fields[4].replace("\\040", " "))
    except OSError:
        pass
    return points


def mount_point_of(path: str, points: list[str]) -> str:
    """The mount point holding ``path`` (the longest mount point that is a prefix of it)."""
    path = os.path.realpath(path)
    best = "/"
    for point in points:
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best = point
    return best


class RuncRuntime:
    """The :class:`~oomtop.lab.runtime.Runtime` of real OCI containers: runc makes each container's cgroup, limit
    and namespaces from a bundle as containerd would, so the lab sees what a node's kubelet and runtime do."""

    name = "runc"
    creates_cgroups = True

    def __init__(self, lab_dir: str, cgroup_version: int) -> None:
        runc = runc_path()
        if runc is None:
            raise LabError("--runtime runc needs runc, which is not installed (Debian: apt-get install runc)")
        self.runc = runc
        self.lab_dir = lab_dir
        self.cgroup_version = cgroup_version
        self.root = os.path.join(lab_dir, "runc")
        self.rootfs = os.path.join(lab_dir, "rootfs")
        self.logs = os.path.join(lab_dir, "logs")
        self.containers: list[str] = []  # ids runc knows, in start order
        self.extra_binds: list[str] = []

    # ------------------------------------------------------------------------------------------- set-up

    def prepare(self) -> None:
        """A private mount namespace for the lab with the host's / bound (read-only) at the rootfs path.

        Must run before the lab starts any thread: a mount namespace is per thread until the others are gone.
        """
        os.makedirs(self.logs, exist_ok=True)
        os.makedirs(self.rootfs, exist_ok=True)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        libc = ctypes.CDLL(None, use_errno=True)

        def call(result: int, what: str) -> None:
            if result != 0:
                error = ctypes.get_errno()
                raise LabError(f"--runtime runc: cannot {what}: {os.strerror(error)}")

        call(libc.unshare(CLONE_NEWNS), "create a private mount namespace for the lab")
        call(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make the lab's mounts private")
        target = self.rootfs.encode()
        call(libc.mount(b"/", target, None, MS_BIND, None), f"bind the host's / at {self.rootfs}")
        call(libc.mount(b"none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None), f"make {self.rootfs} read-only")
        # Like containerd-shim, the lab is its containers' subreaper: their processes, orphaned when runc exits,
        # become the lab's children, and it reaps them (a pid namespace's end waits for every one to be reaped).
        call(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "become the containers' subreaper")
        points = _mount_points()
        wanted = {package_root(), sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))}
        self.extra_binds = sorted({mount_point_of(path, points) for path in wanted} - {"/"})

    # ------------------------------------------------------------------------------------------ containers

    def _runc(
        self,
        *args: str,
        stdin: int | None = None,
        stdout: int | None = None,
        log: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        argv = [self.runc, "--root", self.root, *args]
        with contextlib.ExitStack() as stack:
            # The container's stderr is runc's (pass-through): a file, never a pipe someone must drain.
            handle = stack.enter_context(open(log, "ab")) if log else None
            result = subprocess.run(
                argv,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=stdout if stdout is not None else subprocess.DEVNULL,
                stderr=handle if handle is not None else subprocess.PIPE,
                timeout=RUNC_TIMEOUT_S,
                check=False,
                start_new_session=True,
            )
        if check and result.returncode != 0:
            detail = (result.stderr or b"").decode(errors="replace").strip()
            if log:
                detail = _tail(log)
            raise LabRuntimeError(f"runc {args[0]} failed (status {result.returncode}): {detail}")
        return result

    def start(self, container: Container, proc: LabProcess, argv: list[str], first: bool) -> None:
        pod = container.pod
        log = os.path.join(self.logs, f"{container.id[:12]}.log")
        pid_file = os.path.join(self.logs, f"{container.id[:12]}-{len(container.processes)}.pid")
        if first:
            spec = oci_spec(
                argv=argv,
                env=hog_env(),
                adj=container.adj,
                rootfs=self.rootfs,
                cgroups_path=container.path,
                limit_bytes=container.limit_bytes,
                oom_group=self.cgroup_version == 2 and not container.sandbox,
                annotations=cri_annotations(container),
                hostname=pod.name if container.sandbox else None,
                join_pid=None if container.sandbox else pod.sandbox_pid,
                extra_binds=self.extra_binds,
            )
            directory = bundle.write_config(self.lab_dir, container.id, spec)
            self.containers.append(container.id)
            self._runc(
                "run",
                "--detach",
                "--pid-file",
                pid_file,
                "--bundle",
                directory,
                container.id,
                stdin=proc.pipes.child_stdin,
                stdout=proc.pipes.child_stdout,
                log=log,
            )
        else:
            self._runc(
                "exec",
                "--detach",
                "--pid-file",
                pid_file,
                "--cwd",
                "/",
                container.id,
                *argv,
                stdin=proc.pipes.child_stdin,
                stdout=proc.pipes.child_stdout,
                log=log,
            )
        with open(pid_file, encoding="ascii") as handle:
            proc.pid = int(handle.read().strip())
        proc.ticks = start_ticks(proc.pid)

    def stop_container(self, container: Container) -> list[str]:
        """``runc delete --force``: kills every process of the container, removes its cgroup and state."""
        problems = []
        for proc in container.processes:  # first ourselves: runc's own kill-and-wait takes most of a second
            if proc.alive():
                proc.kill()
        for proc in container.processes:
            proc.wait_dead(5.0)
        if container.id in self.containers:
            result = self._runc("delete", "--force", container.id, check=False)
            if result.returncode != 0 and self._known(container.id):
                problems.append(
                    f"runc delete {container.id[:12]}: {(result.stderr or b'').decode(errors='replace').strip()}"
                )
            else:
                self.containers.remove(container.id)
        for proc in container.processes:
            if proc.alive():
                proc.kill()
        problems += [
            f"{proc.name} (pid {proc.pid}) did not die" for proc in container.processes if not proc.wait_dead(5.0)
        ]
        bundle.remove(self.lab_dir, container.id)
        return problems

    def _known(self, container_id: str) -> bool:
        return container_id in list_containers(self.runc, self.root)

    def close(self) -> list[str]:
        problems = []
        for cid in reversed(list_containers(self.runc, self.root)):
            result = self._runc("delete", "--force", cid, check=False)
            if result.returncode != 0:
                problems.append(f"runc delete {cid[:12]}: {(result.stderr or b'').decode(errors='replace').strip()}")
        self.containers.clear()
        # Our private mount namespace's bind of /: gone before anything removes the directory.  (os.path.ismount
        # cannot see a bind mount of the same filesystem: ask the mount table.)
        while os.path.realpath(self.rootfs) in _mount_points():
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.umount2(self.rootfs.encode(), MNT_DETACH) != 0:
                problems.append(f"cannot unmount {self.rootfs}: {os.strerror(ctypes.get_errno())}")
                break
        return problems


def list_containers(runc: str, root: str) -> list[str]:
    """Container ids in a runc state root (``runc --root ROOT list --quiet``); [] when there is none."""
    if not os.path.isdir(root):
        return []
    try:
        result = subprocess.run(
            [runc, "--root", root, "list", "--quiet"], capture_output=True, timeout=RUNC_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in result.stdout.decode(errors="replace").split() if line]


def _tail(path: str, limit: int = 600) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read()[-limit:]
    except OSError:
        return ""
    return data.decode(errors="replace").strip()
