"""The OCI runtime spec (``config.json``) of one lab container under ``--runtime runc``.

Kept apart from :mod:`oomtop.lab.runtime_runc` because it is plain data, the same for every container but for its
arguments, and can be read and tested without runc: what a container may see (a read-only host rootfs, its own
/proc, /dev and /sys), which namespaces it joins (its sandbox's, as in a pod) and what containerd would put in
``linux.resources`` (the memory limit, and on cgroup v2 ``memory.oom.group``).
"""

from __future__ import annotations

from typing import Any

OCI_VERSION = "1.0.2"
_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
_MASKED = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]
_READ_ONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def oci_spec(
    *,
    argv: list[str],
    env: dict[str, str],
    adj: int,
    rootfs: str,
    cgroups_path: str,
    limit_bytes: int | None,
    oom_group: bool,
    annotations: dict[str, str],
    hostname: str | None,
    join_pid: int | None,
    extra_binds: list[str],
) -> dict[str, Any]:
    """The OCI runtime spec of one container (``join_pid``: the sandbox whose namespaces it joins)."""
    spec = {
        "ociVersion": OCI_VERSION,
        "process": _process(argv, env, adj),
        "root": {"path": rootfs, "readonly": True},
        "mounts": _mounts(extra_binds),
        "annotations": annotations,
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": _resources(limit_bytes, oom_group),
            "namespaces": _namespaces(join_pid),
            "maskedPaths": list(_MASKED),
            "readonlyPaths": list(_READ_ONLY),
        },
    }
    if hostname is not None:
        spec["hostname"] = hostname
    return spec


def _process(argv: list[str], env: dict[str, str], adj: int) -> dict[str, Any]:
    """The container's process: root, a few capabilities, and kubelet's ``oom_score_adj`` set by runc itself."""
    return {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": argv,
        "env": [f"{key}={value}" for key, value in env.items()],
        "cwd": "/",
        "capabilities": {kind: list(_CAPS) for kind in ("bounding", "effective", "permitted", "ambient")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
        "oomScoreAdj": adj,
    }


def _namespaces(join_pid: int | None) -> list[dict[str, str]]:
    """A sandbox gets new namespaces; a container joins its sandbox's (pid included: shareProcessNamespace, so a
    killed hog takes nobody else with it) and gets a mount namespace of its own."""
    if join_pid is None:
        return [{"type": kind} for kind in ("pid", "ipc", "uts", "mount", "network")]
    namespaces = [
        {"type": kind, "path": f"/proc/{join_pid}/ns/{name}"}
        for kind, name in (("pid", "pid"), ("ipc", "ipc"), ("uts", "uts"), ("network", "net"))
    ]
    namespaces.append({"type": "mount"})
    return namespaces


def _resources(limit_bytes: int | None, oom_group: bool) -> dict[str, Any]:
    """What containerd writes for kubelet: the memory limit, and ``memory.oom.group`` (kubelet 1.28+ on v2)."""
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if limit_bytes is not None:
        resources["memory"] = {"limit": limit_bytes}
    if oom_group:
        resources["unified"] = {"memory.oom.group": "1"}
    return resources


def _mounts(extra_binds: list[str]) -> list[dict[str, Any]]:
    """A container's own /proc, /dev, /dev/pts, /dev/shm and /sys, plus read-only binds of the mounts that hold
    the hog's interpreter and oomtop (they are not on the rootfs's filesystem when they are mounts of their own)."""
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    ]
    mounts += [
        {"destination": point, "type": "bind", "source": point, "options": ["rbind", "ro"]} for point in extra_binds
    ]
    return mounts
