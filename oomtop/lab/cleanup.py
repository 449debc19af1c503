"""Leaving nothing behind: the lab's lock, its leftovers check, and ``oomtop lab --clean``.

What a lab run makes, and how each is undone (by :meth:`oomtop.lab.node.LabNode.close` on exit, Ctrl-C, SIGTERM
or a crashed scenario, and by :func:`clean` after a lab that could not clean up, e.g. one killed with SIGKILL):

- processes: hogs and sandboxes exit on their own when the lab's end of their stdin closes, which the kernel does
  when the lab dies, however it dies; :func:`clean` also kills any process still in a lab cgroup;
- runc containers: state under ``<lab dir>/runc``, removed with ``runc delete --force``;
- cgroups: ``/oomtop-lab`` in the memory hierarchy, and (made by runc, which joins every controller) in every
  other cgroup hierarchy; removed bottom-up, and only below ``/oomtop-lab``;
- the lab directory (``/run/oomtop-lab``: bundles, logs, runc state, the rootfs mount point; the rootfs bind mount
  itself only ever exists in the lab's private mount namespace).

The lab directory doubles as the lock: ``mkdir`` either makes it or tells that another lab (or a dead one's
leftovers) holds it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from oomtop.lab import LAB_DIR, LAB_NAME, LabError
from oomtop.lab.layout import LAB_CGROUP, rmdir_tree
from oomtop.lab.procs import HOG_MODULE, start_ticks
from oomtop.lab.runtime_runc import list_containers, runc_path

OWNER_FILE = "owner"


def cgroup_mounts() -> list[str]:
    """Mount points of every cgroup (v1) and cgroup2 filesystem."""
    points = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if " - " not in line or len(fields) < 5:
                    continue
                fstype = line.split(" - ", 1)[1].split()[0]
                if fstype in ("cgroup", "cgroup2"):
                    points.append(fields[4].replace("\\040", " "))
    except OSError:
        pass
    return sorted(set(points))


def lab_cgroup_dirs() -> list[str]:
    return [point + LAB_CGROUP for point in cgroup_mounts() if os.path.isdir(point + LAB_CGROUP)]


def sweep_cgroups() -> list[str]:
    """Remove ``/oomtop-lab`` from every cgroup hierarchy (runc makes it in each); the problems, if any."""
    problems = []
    for directory in lab_cgroup_dirs():
        problems += rmdir_tree(directory)
    return problems


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [part.decode(errors="replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def hog_processes() -> list[int]:
    """Running lab hogs (``python -m oomtop.lab.hog``), whoever started them."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and entry != str(os.getpid()):
            argv = _cmdline(int(entry))
            if HOG_MODULE in argv and "-m" in argv:
                found.append(int(entry))
    return sorted(found)


def processes_in_lab_cgroups() -> list[int]:
    pids: set[int] = set()
    for directory in lab_cgroup_dirs():
        for current, _dirs, files in os.walk(directory):
            if "cgroup.procs" in files:
                try:
                    with open(os.path.join(current, "cgroup.procs"), encoding="ascii") as handle:
                        pids.update(int(p) for p in handle.read().split())
                except OSError:
                    continue
    return sorted(pids)


def owner(lab_dir: str = LAB_DIR) -> int | None:
    """The pid of the lab that holds ``lab_dir``, when that process still runs."""
    try:
        with open(os.path.join(lab_dir, OWNER_FILE), encoding="ascii") as handle:
            pid_text, ticks_text = ([*handle.read().split(), "", ""])[:2]
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    ticks = start_ticks(pid)
    return pid if ticks is not None and str(ticks) == ticks_text else None


def find_leftovers(lab_dir: str = LAB_DIR) -> list[str]:
    """What an earlier lab left behind (or a running lab holds), one line each; empty when the machine is clean."""
    found = [f"cgroup {directory}" for directory in lab_cgroup_dirs()]
    if os.path.isdir(lab_dir):
        found.append(f"directory {lab_dir}")
        runc = runc_path()
        if runc is not None:
            found += [f"runc container {cid}" for cid in list_containers(runc, os.path.join(lab_dir, "runc"))]
    found += [f"hog process {pid}" for pid in hog_processes()]
    return found


def acquire(lab_dir: str = LAB_DIR) -> None:
    """Take the lab's lock (its directory) or say why not, in one sentence."""
    holder = owner(lab_dir)
    if holder is not None:
        raise LabError(f"another oomtop lab (pid {holder}) is running; wait for it or stop it first")
    leftovers = find_leftovers(lab_dir)
    if leftovers:
        raise LabError(
            f"a previous oomtop lab left {len(leftovers)} things behind ({'; '.join(leftovers[:4])}"
            f"{'; ...' if len(leftovers) > 4 else ''}): run `oomtop lab --clean` to remove them"
        )
    os.makedirs(os.path.dirname(lab_dir), exist_ok=True)
    try:
        os.mkdir(lab_dir, 0o755)
    except FileExistsError:
        raise LabError(f"another oomtop lab is starting ({lab_dir} appeared just now)") from None
    with open(os.path.join(lab_dir, OWNER_FILE), "w", encoding="ascii") as handle:
        handle.write(f"{os.getpid()} {start_ticks(os.getpid())}\n")


def mount_points_under(path: str) -> list[str]:
    """Mount points at or below ``path`` in this process's mount namespace (/proc/self/mountinfo: a bind mount of
    a directory of the same filesystem is invisible to ``os.path.ismount``)."""
    path = os.path.realpath(path)
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 4:
                    point = fields[4].replace("\\040", " ")
                    if point == path or point.startswith(path.rstrip("/") + "/"):
                        found.append(point)
    except OSError:
        pass
    return found


def release(lab_dir: str = LAB_DIR) -> list[str]:
    """Remove the lab directory (everything in it is the lab's).

    Never through a mount: if anything below it is mounted (the runc rootfs, a bind of the host's /, while the
    lab's mount namespace still exists), nothing is removed; and the rootfs directory is only ever rmdir'ed.
    """
    if not os.path.isdir(lab_dir):
        return []
    mounted = mount_points_under(lab_dir)
    if mounted:
        return [f"{point} is a mount point: {lab_dir} left in place" for point in mounted]
    problems: list[str] = []
    rootfs = os.path.join(lab_dir, "rootfs")
    levels = []
    for current, dirs, files in os.walk(lab_dir, topdown=True):  # pruned walk: never into the rootfs
        if current == lab_dir and "rootfs" in dirs:
            dirs.remove("rootfs")
        levels.append((current, list(dirs), files))
    for current, dirs, files in reversed(levels):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(current, d))]:
            try:
                os.unlink(os.path.join(current, name))
            except FileNotFoundError:
                pass
            except OSError as error:
                problems.append(f"cannot remove {os.path.join(current, name)}: {error.strerror}")
        for name in dirs:
            target = os.path.join(current, name)
            if os.path.islink(target):
                continue
            try:
                os.rmdir(target)
            except FileNotFoundError:
                pass
            except OSError as error:
                problems.append(f"cannot remove {target}: {error.strerror}")
    for target in (rootfs, lab_dir):
        try:
            os.rmdir(target)
        except FileNotFoundError:
            pass
        except OSError as error:
            problems.append(f"cannot remove {target}: {error.strerror}")
    return problems


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") and _alive(pid) for pid in pids):
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def clean(lab_dir: str = LAB_DIR) -> tuple[list[str], list[str]]:
    """Remove an earlier lab's leftovers: (what was removed, what could not be)."""
    holder = owner(lab_dir)
    if holder is not None:
        raise LabError(f"an oomtop lab (pid {holder}) is running and owns these; stop it instead (it cleans up)")
    removed = find_leftovers(lab_dir)
    runc = runc_path()
    if runc is not None:
        root = os.path.join(lab_dir, "runc")
        for cid in list_containers(runc, root):
            import subprocess

            subprocess.run(
                [runc, "--root", root, "delete", "--force", cid], capture_output=True, timeout=30, check=False
            )
    _kill(sorted(set(processes_in_lab_cgroups()) | set(hog_processes())))
    problems = sweep_cgroups()
    problems += release(lab_dir)
    still = find_leftovers(lab_dir)
    problems += [f"still there: {item}" for item in still if not any(item in p for p in problems)]
    return [item for item in removed if item not in still], problems


__all__ = ["LAB_NAME", "acquire", "clean", "find_leftovers", "release", "sweep_cgroups"]
