"""The oomtop image (deploy/image/build.sh), run the way Kubernetes runs it.

The image is built once per session from this checkout's wheel and cached under ``~/.cache/oomtop-image/<key>``
(the key: a hash of the wheel's contents and of deploy/image/*), so a rerun only unpacks it.  Every container is
a runc bundle whose config.json is written here, as kubelet and containerd shape a ``kubectl debug node`` pod or a
DaemonSet pod (hostPID, hostNetwork, the host's ``/`` as a read-only hostPath volume at ``/host``):

* the image's own entry point and environment (from ``umoci unpack``), its root filesystem read-only;
* the host's ``/`` at ``/host``: ``rbind,ro,rprivate``: read-only on the top mount only, as kubelet's
  ``readOnly: true`` hostPath (``recursiveReadOnly: Enabled`` is ``rro``: see the wake-up test);
* no pid, network or IPC namespace of its own (the host's: pids match the kernel log and ``cgroup.procs``, and
  ``serve`` on 127.0.0.1 is reached from the host); its own mount, UTS and cgroup namespaces;
* uid 0, ``noNewPrivileges``, containerd's masked and read-only ``/proc`` paths, a deny-all device cgroup, and
  exactly these privileges, each proven needed (or not) by a test below:

  - nothing at all (no capability, no device) to read what oomtop samples: the cgroup filesystem and
    ``/proc/<pid>/{stat,statm,status,cmdline,oom_score,oom_score_adj}`` of every process, another user's too
    (``test_once_json_matches_host`` runs with none; one of its processes belongs to uid 65534);
  - ``CAP_SYSLOG`` (``kernel.dmesg_restrict=1``) and the device ``/dev/kmsg`` (char 1:11, read) for the kernel
    log: the victim's details (``test_kmsg_needs_exactly``).  Kubernetes cannot grant a device to an
    unprivileged container, and CAP_SYSLOG alone gets EPERM from the device cgroup: ``privileged: true`` there,
    or ``--kmsg none`` (``test_events_without_kmsg``: the kill with its pod and container, no victim);
  - uid 0 (no capability) for the cgroup v1 OOM wake-ups: ``cgroup.event_control`` is mode 0200, root's; as
    another user kills are seen at the next poll, and oomtop says so (``test_v1_wakeups_need_uid_0``).

What such a container does to oomtop is checked too: in a private cgroup namespace ``/proc/<pid>/cgroup`` is
relative to the container's own cgroup (oomtop resolves it); in a private UTS namespace the kernel's hostname is
the container's (oomtop names the node from the host's /etc/hostname); with the host mounted recursively
read-only the v1 wake-ups cannot be registered (oomtop says so once).

Needs root, the cgroup v1 memory controller, gcc (the hogs), mmdebstrap, umoci and runc, and for the kernel
log tests a readable /dev/kmsg; skips elsewhere, fails instead when OOMTOP_REQUIRE_REAL_KERNEL=1.  Every
container (``runc delete -f``), bundle, cgroup and process the tests make is removed also when they fail.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import fcntl
import glob
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest

from tests.realkernel import MEMORY_ROOT, TestHierarchy, build_hog, start_hog
from tests.test_prometheus import free_port, http_get
from tests.test_realkernel_events import (
    KmsgTail,
    Seen,
    check_events,
    overshoot,
    wait_for_report_budget,
)

pytestmark = [pytest.mark.oci, pytest.mark.memcg_v1]

REPO = Path(__file__).resolve().parent.parent
IMAGE_DIR = REPO / "deploy" / "image"
BUILD = IMAGE_DIR / "build.sh"
CACHE = Path.home() / ".cache" / "oomtop-image"
MIB = 1 << 20
MAX_UNPACKED_BYTES = 150 * MIB
HOSTNAME = "oomtop-image-test"  # the container's own (private UTS namespace)
CGROUP_PREFIX = "oomtop-image-"  # runc's cgroup of each container (cgroupsPath /oomtop-image-<hex>) and its id
HOST_MOUNT = ("rbind", "ro", "rprivate")  # kubelet's readOnly hostPath: read-only on the top mount only
EXPLAIN_LOG = REPO / "tests" / "data" / "exit_race_6.18.dmesg"
PR_SET_PDEATHSIG = 1


# --------------------------------------------------------------------------------------------- the image


@dataclass(frozen=True)
class Image:
    layout: Path  # an OCI image layout
    tag: str
    version: str
    unpacked_bytes: int
    layer_bytes: int
    build_seconds: float
    built_now: bool  # False: taken from the cache


def _wheel_key(wheel: Path) -> str:
    """A hash of what goes into the image: the wheel's files (not the zip's timestamps) and deploy/image/*."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            digest.update(name.encode() + b"\0" + archive.read(name) + b"\0")
    for path in sorted(IMAGE_DIR.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def _read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The image of this checkout: from the cache when its key matches, else built now (about 80 s)."""
    wheels = tmp_path_factory.mktemp("oomtop-wheel")
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--disable-pip-version-check",
            "-w",
            str(wheels),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert made.returncode == 0, f"pip wheel failed:\n{made.stdout}{made.stderr}"
    (wheel,) = wheels.glob("oomtop-*.whl")
    key = _wheel_key(wheel)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (two sessions, one cache)
        entry = CACHE / key
        built_now = not (entry / "image.env").is_file() or not (entry / "oci" / "index.json").is_file()
        if built_now:
            for old in CACHE.iterdir():  # the cache holds one image: the newest
                if old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
            build = subprocess.Popen(
                ["bash", str(BUILD), "--wheel", str(wheel), str(entry)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # a timeout stops the whole build, and build.sh removes its temp dir
            )
            try:
                output, _ = build.communicate(timeout=1200)
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(build.pid, signal.SIGTERM)
                try:
                    build.communicate(timeout=120)
                except subprocess.TimeoutExpired:
                    os.killpg(build.pid, signal.SIGKILL)
                    build.communicate()
                raise
            print(output[-2000:])
            assert build.returncode == 0, f"{BUILD} failed ({build.returncode}):\n{output[-4000:]}"
    env = _read_env(entry / "image.env")
    return Image(
        layout=entry / "oci",
        tag=env["OOMTOP_IMAGE_TAG"],
        version=env["OOMTOP_IMAGE_VERSION"],
        unpacked_bytes=int(env["OOMTOP_IMAGE_UNPACKED_BYTES"]),
        layer_bytes=int(env["OOMTOP_IMAGE_LAYER_BYTES"]),
        build_seconds=float(env["OOMTOP_IMAGE_BUILD_SECONDS"]),
        built_now=built_now,
    )


@dataclass(frozen=True)
class Unpacked:
    rootfs: Path  # shared by every container, mounted read-only
    config: dict[str, Any]  # umoci's runtime config: the image's entry point and environment


@pytest.fixture(scope="session")
def unpacked(image: Image) -> Iterator[Unpacked]:
    work = Path(tempfile.mkdtemp(prefix="oomtop-image-rootfs-", dir="/var/tmp"))
    try:
        done = subprocess.run(
            ["umoci", "unpack", "--image", f"{image.layout}:{image.tag}", str(work / "bundle")],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"umoci unpack failed:\n{done.stdout}{done.stderr}"
        config = json.loads((work / "bundle" / "config.json").read_text())
        yield Unpacked(work / "bundle" / "rootfs", config)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------------ the containers


@dataclass(frozen=True)
class Privileges:
    """What the container gets beyond uid 0 in the host's user namespace."""

    name: str
    capabilities: tuple[str, ...] = ()
    kmsg_node: bool = False  # /dev/kmsg made in the container's /dev (runc then allows its device too)
    kmsg_rule: bool = False  # the device cgroup rule "c 1:11 r"
    uid: int = 0


NONE = Privileges("none")
KMSG = Privileges("kmsg", ("CAP_SYSLOG",), kmsg_node=True, kmsg_rule=True)

# containerd's defaults for every container (oci.WithMaskedPaths / WithReadonlyPaths)
MASKED = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def _pdeathsig() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Container:
    """A container running in the foreground of ``runc run`` (its stdout and stderr are our pipes, read by threads
    line by line, as ``kubectl logs`` would)."""

    def __init__(self, runc: Runc, cid: str, argv: list[str], stdin: int | None = subprocess.DEVNULL) -> None:
        self.runc = runc
        self.cid = cid
        self.argv = argv
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            runc.command("run", "--bundle", str(runc.bundles / cid), cid),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_pdeathsig,
        )
        self._threads = [
            threading.Thread(target=self._read, args=(stream, sink), daemon=True)
            for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, stream: Any, sink: list[str]) -> None:
        for raw in iter(stream.readline, b""):
            with self._cond:
                sink.append(raw.decode("utf-8", "backslashreplace").rstrip("\n"))
                self._cond.notify_all()

    def pid(self, timeout: float = 10.0) -> int:
        """The container process's pid (the host's: no pid namespace of its own)."""
        deadline = time.monotonic() + timeout
        while True:
            state = subprocess.run(self.runc.command("state", self.cid), capture_output=True, text=True, check=False)
            if state.returncode == 0 and json.loads(state.stdout).get("pid"):
                return int(json.loads(state.stdout)["pid"])
            assert self.proc.poll() is None, f"{self.describe()}: exited while starting"
            assert time.monotonic() < deadline, f"{self.describe()}: no pid after {timeout}s: {state.stderr}"
            time.sleep(0.05)

    def open_files(self) -> set[str]:
        """What the oomtop process has open, as paths inside the container (readlink of /proc/<pid>/fd/*)."""
        base = f"/proc/{self.pid()}/fd"
        found = set()
        with contextlib.suppress(OSError):
            for name in os.listdir(base):
                with contextlib.suppress(OSError):
                    found.add(os.readlink(os.path.join(base, name)))
        return found

    def wait_watching(self, tree: TestHierarchy, cgroups: list[str], kmsg: bool, timeout: float = 20.0) -> None:
        """Until oomtop holds /dev/kmsg (with ``kmsg``) and memory.oom_control of each of ``cgroups`` open (under
        /host: it has sampled them, and registered its wake-ups)."""
        wanted = {f"/host/sys/fs/cgroup/memory{rel}/memory.oom_control" for rel in cgroups}
        wanted |= {"/dev/kmsg"} if kmsg else set()
        assert tree.memory_root == MEMORY_ROOT
        deadline = time.monotonic() + timeout
        while True:
            missing = wanted - self.open_files()
            if not missing:
                return
            assert self.proc.poll() is None, f"{self.describe()}: exited while starting"
            assert time.monotonic() < deadline, f"{self.describe()}: not watching after {timeout}s: {sorted(missing)}"
            time.sleep(0.05)

    def events(self) -> list[Seen]:
        """The events it printed of kills it saw happen (not the history of the ring buffer: after thousands of
        test processes the kernel reuses pids, and an old kill of a pid is not ours)."""
        with self._cond:
            lines = list(self.stdout)
        seen = [Seen(0.0, json.loads(line)) for line in lines if line.startswith("{")]
        return [s for s in seen if not s.event.get("historical")]

    def stderr_text(self) -> str:
        with self._cond:
            return "\n".join(self.stderr)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                return predicate()
            time.sleep(0.05)
        return True

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM to the container process (``runc kill``, as kubelet stops it); its exit status."""
        if self.proc.poll() is None:
            subprocess.run(self.runc.command("kill", self.cid, "TERM"), capture_output=True, check=False)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                subprocess.run(self.runc.command("kill", self.cid, "KILL"), capture_output=True, check=False)
                self.proc.wait(10)
        for thread in self._threads:
            thread.join(5)
        return int(self.proc.returncode)

    def describe(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited with {self.proc.returncode}"
        return f"container {self.cid} ({' '.join(self.argv)}; {state}); stderr: {self.stderr_text()[-1500:]!r}"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            subprocess.run(self.runc.command("kill", self.cid, "KILL"), capture_output=True, check=False)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self.stop()
        self.runc.delete(self.cid)


class Runc:
    """runc with a state directory of its own; every container it made is deleted by :meth:`close`."""

    def __init__(self, work: Path, image: Unpacked) -> None:
        self.state = work / "state"
        self.bundles = work / "bundles"
        self.bundles.mkdir(parents=True)
        self.image = image
        process = image.config["process"]
        self.entrypoint: list[str] = list(process["args"])
        self.env = [e for e in process["env"] if not e.startswith("TERM=")]  # umoci's default: a terminal's
        self.live: set[str] = set()

    def command(self, *args: str) -> list[str]:
        return ["runc", "--root", str(self.state), *args]

    def config(
        self,
        cid: str,
        args: list[str],
        privileges: Privileges,
        *,
        entrypoint: list[str] | None = None,
        terminal: bool = False,
        env: tuple[str, ...] = (),
        mounts: tuple[dict[str, Any], ...] = (),
        host_options: tuple[str, ...] = HOST_MOUNT,
    ) -> dict[str, Any]:
        caps = list(privileges.capabilities)
        devices = []
        if privileges.kmsg_node:
            devices.append({"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o644})
        rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
        if privileges.kmsg_rule:
            rules.append({"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"})
        return {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": terminal,
                "user": {"uid": privileges.uid, "gid": privileges.uid},
                "args": [*(self.entrypoint if entrypoint is None else entrypoint), *args],
                "env": [*self.env, *env],
                "cwd": "/",
                "capabilities": {kind: caps for kind in ("bounding", "effective", "permitted")},
                "noNewPrivileges": True,
            },
            "root": {"path": str(self.image.rootfs), "readonly": True},
            "hostname": HOSTNAME,
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
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
                {
                    "destination": "/sys",
                    "type": "sysfs",
                    "source": "sysfs",
                    "options": ["nosuid", "noexec", "nodev", "ro"],
                },
                {
                    "destination": "/sys/fs/cgroup",
                    "type": "cgroup",
                    "source": "cgroup",
                    "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
                },
                {"destination": "/host", "type": "bind", "source": "/", "options": list(host_options)},
                *mounts,
            ],
            "linux": {
                "cgroupsPath": f"/{cid}",
                # no pid, network or ipc entry: the host's (hostPID, hostNetwork)
                "namespaces": [{"type": "mount"}, {"type": "uts"}, {"type": "cgroup"}],
                "resources": {"devices": rules},
                "devices": devices,
                "maskedPaths": MASKED,
                "readonlyPaths": READONLY,
            },
        }

    def create_bundle(self, args: list[str], privileges: Privileges, **options: Any) -> str:
        cid = CGROUP_PREFIX + secrets.token_hex(6)
        bundle = self.bundles / cid
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(self.config(cid, args, privileges, **options), indent=1))
        self.live.add(cid)
        return cid

    def run(
        self, args: list[str], privileges: Privileges, stdin: bytes | None = None, timeout: float = 120, **options: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run to the end (``runc run`` in the foreground), then delete the container."""
        cid = self.create_bundle(args, privileges, **options)
        try:
            return subprocess.run(
                self.command("run", "--bundle", str(self.bundles / cid), cid),
                input=stdin.decode() if stdin is not None else None,
                stdin=subprocess.DEVNULL if stdin is None else None,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                preexec_fn=_pdeathsig,
            )
        finally:
            self.delete(cid)

    def start(self, args: list[str], privileges: Privileges, **options: Any) -> Container:
        cid = self.create_bundle(args, privileges, **options)
        try:
            return Container(self, cid, args)
        except BaseException:
            self.delete(cid)
            raise

    def delete(self, cid: str) -> list[str]:
        """``runc delete -f``, the bundle, and (should runc have left one) the container's cgroups: only ours."""
        problems = []
        done = subprocess.run(self.command("delete", "-f", cid), capture_output=True, text=True, check=False)
        if done.returncode != 0 and "does not exist" not in done.stderr + done.stdout:
            problems.append(f"runc delete -f {cid}: {done.stderr.strip()}")
        shutil.rmtree(self.bundles / cid, ignore_errors=True)
        assert cid.startswith(CGROUP_PREFIX)
        for path in glob.glob(f"/sys/fs/cgroup/*/{cid}") + glob.glob(f"/sys/fs/cgroup/{cid}"):
            deadline = time.monotonic() + 5
            while os.path.isdir(path):
                try:
                    os.rmdir(path)
                except OSError as error:
                    if error.errno not in (errno.EBUSY, errno.EAGAIN) or time.monotonic() > deadline:
                        problems.append(f"rmdir {path}: {error}")
                        break
                    time.sleep(0.05)
        self.live.discard(cid)
        return problems

    def close(self) -> list[str]:
        problems = [p for cid in list(self.live) for p in self.delete(cid)]
        listed = subprocess.run(self.command("list", "-q"), capture_output=True, text=True, check=False)
        problems += [f"runc still lists {cid}" for cid in listed.stdout.split()]
        return problems


@pytest.fixture(scope="session")
def runc(unpacked: Unpacked) -> Iterator[Runc]:
    work = Path(tempfile.mkdtemp(prefix="oomtop-image-runc-", dir="/var/tmp"))
    runner = Runc(work, unpacked)

    def close() -> list[str]:
        try:
            return runner.close()
        finally:
            shutil.rmtree(work, ignore_errors=True)

    atexit.register(close)  # also when the session is cut short
    try:
        yield runner
    finally:
        atexit.unregister(close)
        problems = close()
        assert not problems, "clean-up of the containers incomplete: " + "; ".join(problems)


@pytest.fixture(scope="module")
def hog_binary(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_hog(str(tmp_path_factory.mktemp("oomtop-image-hog")))


@pytest.fixture
def tree() -> Iterator[TestHierarchy]:
    with TestHierarchy() as hierarchy:
        yield hierarchy


# ------------------------------------------------------------------------------------- a node to look at


@dataclass
class Node:
    """Pods and processes of this test's own, kept running while the module's tests look at them."""

    tree: TestHierarchy
    guaranteed: str  # a container of a Guaranteed pod (pod and container limited)
    burstable: str  # a container of a Burstable pod, limited, near its limit
    unlimited: str  # a second container of that pod: its domain is the pod
    besteffort: str  # a container of a BestEffort pod, with a process of another user (uid 65534)
    pods: dict[str, str] = field(default_factory=dict)  # container -> pod uid
    pod_paths: dict[str, str] = field(default_factory=dict)  # container -> its pod's cgroup
    pids: dict[int, str] = field(default_factory=dict)  # pid -> its cgroup
    other_user: int = 0  # pid of the uid-65534 process

    def ours(self, path: str) -> bool:
        return path == self.tree.parent or path.startswith(self.tree.parent + "/")


@pytest.fixture(scope="module")
def node(hog_binary: str) -> Iterator[Node]:
    with TestHierarchy() as tree:
        guaranteed = tree.add_pod("guaranteed", 96 * MIB)
        burstable = tree.add_pod("burstable", 256 * MIB)
        besteffort = tree.add_pod("besteffort")
        n = Node(
            tree,
            guaranteed=tree.add_container(guaranteed, 96 * MIB),
            burstable=tree.add_container(burstable, 24 * MIB),
            unlimited=tree.add_container(burstable),
            besteffort=tree.add_container(besteffort),
        )
        for container, pod in [
            (n.guaranteed, guaranteed),
            (n.burstable, burstable),
            (n.unlimited, burstable),
            (n.besteffort, besteffort),
        ]:
            n.pods[container], n.pod_paths[container] = pod.uid, pod.path
        for cgroup, mib, adj in [
            (n.guaranteed, 12, 0),
            (n.guaranteed, 20, 0),  # the Guaranteed domain's victim: the bigger one
            (n.burstable, 16, 500),  # 16 of 24 MiB: its container's victim
            (n.unlimited, 4, 900),  # the pod's victim: 4 MiB but adj 900
            (n.besteffort, 6, 1000),
        ]:
            n.pids[start_hog(tree, hog_binary, cgroup, mib, adj).pid] = cgroup
        other = subprocess.Popen(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "sleep", "3600"],
            preexec_fn=_pdeathsig,
        )
        try:
            with open(tree.file(n.besteffort, "cgroup.procs"), "w") as procs:
                procs.write(str(other.pid))
            n.other_user = other.pid
            n.pids[other.pid] = n.besteffort
            yield n
        finally:
            other.kill()
            other.wait(10)


def once_json(result: subprocess.CompletedProcess[str], where: str) -> dict[str, Any]:
    assert result.returncode == 0, f"{where}: exit status {result.returncode}; stderr: {result.stderr[-2000:]!r}"
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def memory_cgroups() -> set[str]:
    """Every memory cgroup of the machine now (hierarchy-relative paths)."""
    found = set()
    for directory, _dirs, _files in os.walk(MEMORY_ROOT):
        found.add(directory[len(MEMORY_ROOT) :] or "/")
    return found


@dataclass
class Views:
    host: dict[str, Any]
    container: dict[str, Any]
    stable: set[str]  # cgroups that existed before and after both runs


@pytest.fixture(scope="module")
def views(node: Node, runc: Runc) -> Views:
    """``oomtop --once --json`` on the host and, in the container with no privilege at all, with --host-root."""
    before = memory_cgroups()
    host = subprocess.run(
        [sys.executable, "-m", "oomtop", "--once", "--json", "--kmsg", "none"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    inside = runc.run(["--once", "--json", "--host-root", "/host", "--kmsg", "none"], NONE)
    after = memory_cgroups()
    return Views(once_json(host, "on the host"), once_json(inside, "in the container"), before & after)


# ------------------------------------------------------------------------------------------------ tests


def test_image_is_small_and_holds_only_what_runs(image: Image, unpacked: Unpacked) -> None:
    print(
        f"\noomtop image {image.version}: unpacked {image.unpacked_bytes / MIB:.1f} MiB, compressed layer "
        f"{image.layer_bytes / MIB:.1f} MiB, build {image.build_seconds:.0f} s"
        + ("" if image.built_now else " (cached)")
    )
    assert image.unpacked_bytes < MAX_UNPACKED_BYTES, f"{image.unpacked_bytes / MIB:.1f} MiB unpacked"
    root = unpacked.rootfs
    assert unpacked.config["process"]["args"] == ["/usr/local/bin/oomtop"], unpacked.config["process"]
    assert (root / "usr/local/bin/oomtop").read_text().startswith("#!/usr/bin/python3\n")
    unwanted = [
        *glob.glob(f"{root}/usr/bin/pip*"),
        *glob.glob(f"{root}/usr/lib/python3*/*-packages/pip"),
        *glob.glob(f"{root}/usr/local/lib/python3*/*-packages/pip"),
        *glob.glob(f"{root}/usr/lib/python3*/ensurepip"),
        *[
            p
            for p in glob.glob(f"{root}/usr/bin/*")
            if re.fullmatch(r"(.*-)?(gcc|g\+\+|cc|c\+\+|ld|as|make)(-\d+)?", p.rsplit("/", 1)[1])
        ],
        *[p for p in glob.glob(f"{root}/usr/share/doc/*/*") if not p.endswith("/copyright")],
        *glob.glob(f"{root}/usr/share/man/*"),
        *glob.glob(f"{root}/usr/share/locale/*"),
        *glob.glob(f"{root}/var/lib/apt/lists/*_Packages"),
        *glob.glob(f"{root}/var/cache/apt/archives/*.deb"),
        *glob.glob(f"{root}/root/.cache/*"),
    ]
    assert not unwanted, f"not for a runtime image: {unwanted[:20]}"
    site = glob.glob(f"{root}/usr/local/lib/python3*/dist-packages/oomtop")
    assert site and glob.glob(f"{site[0]}/__pycache__/cli.cpython-3*.pyc"), "oomtop is not byte-compiled"


def test_version_and_help(runc: Runc, image: Image) -> None:
    done = runc.run(["--version"], NONE)
    assert (done.returncode, done.stdout.strip()) == (0, f"oomtop {image.version}"), done


def test_once_json_matches_host(node: Node, views: Views) -> None:
    """Every cgroup of the machine, and this test's processes, their figures and the predicted victim of every
    domain, alike from inside (``--host-root /host``, no capability) and on the host."""
    host, inside = views.host, views.container
    for key in ("cgroup_version", "cgroup_layout", "mem_total_bytes", "page_size", "kernel_release"):
        assert inside["node"][key] == host["node"][key], key
    host_paths = {c["path"] for c in host["cgroups"]}
    inside_paths = {c["path"] for c in inside["cgroups"]}
    assert views.stable <= host_paths, sorted(views.stable - host_paths)[:10]
    assert views.stable <= inside_paths, (
        f"cgroups the container did not see: {sorted(views.stable - inside_paths)[:10]}"
    )
    assert any(p.startswith("/" + CGROUP_PREFIX) for p in inside_paths), "the container's own cgroup is missing"

    def ours(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {c["path"]: c for c in view["cgroups"] if node.ours(c["path"])}

    host_cgroups, inside_cgroups = ours(host), ours(inside)
    assert set(inside_cgroups) == set(host_cgroups) == set(node.tree.created())
    for path, want in host_cgroups.items():
        got = inside_cgroups[path]
        for key in ("kind", "label", "qos", "pod", "container", "limit_bytes", "pids", "predicted_victim_pid"):
            assert got.get(key) == want.get(key), (
                f"{path}: {key} inside {got.get(key)!r}, on the host {want.get(key)!r}"
            )
    victims = {path: c["predicted_victim_pid"] for path, c in host_cgroups.items() if c["predicted_victim_pid"]}
    assert victims[node.burstable] == _pid(node, node.burstable, 16), victims
    assert victims[node.pod_paths[node.burstable]] == _pid(node, node.unlimited, 4), victims
    assert victims[node.pod_paths[node.guaranteed]] == _pid(node, node.guaranteed, 20), victims

    def tasks(view: dict[str, Any]) -> dict[int, dict[str, Any]]:
        return {t["pid"]: t for t in view["tasks"] if t["pid"] in node.pids}

    host_tasks, inside_tasks = tasks(host), tasks(inside)
    assert set(host_tasks) == set(inside_tasks) == set(node.pids), (sorted(host_tasks), sorted(inside_tasks))
    for pid, want in host_tasks.items():
        got = inside_tasks[pid]
        assert got["cgroup"] == node.pids[pid]
        for key in ("comm", "cmdline", "uid", "cgroup", "oom_score_adj", "oom_score", "memcg_domain", "memcg_score"):
            assert got[key] == want[key], f"pid {pid}: {key} inside {got[key]!r}, on the host {want[key]!r}"
        for key in ("rss_bytes", "rss_anon_bytes"):
            assert abs(got[key] - want[key]) <= 64 * 1024, f"pid {pid}: {key} inside {got[key]}, host {want[key]}"
    other = inside_tasks[node.other_user]
    assert other["uid"] == 65534 and other["comm"] == "sleep" and other["cmdline"], other
    assert other["rss_bytes"] and other["oom_score_adj"] == 0, other


def _pid(node: Node, cgroup: str, mib: int) -> int:
    (pid,) = [p.pid for p in node.tree.processes if p.cgroup == cgroup and p.mib == mib]
    return pid


def test_node_hostname_is_the_hosts(views: Views) -> None:
    assert views.host["node"]["hostname"] == socket.gethostname()
    assert views.container["node"]["hostname"] == views.host["node"]["hostname"]


def test_proc_cgroup_is_relative_in_a_private_cgroup_namespace(node: Node, runc: Runc) -> None:
    """What the kernel shows: inside the container's cgroup namespace ``/proc/<pid>/cgroup`` of a host process
    is relative to the container's own cgroup (``/<container>``, one level down), so it starts with ``/..``."""
    pid = next(iter(node.pids))
    with open(f"/proc/{pid}/cgroup", encoding="utf-8") as handle:
        on_host = handle.read()
    done = runc.run([f"/host/proc/{pid}/cgroup"], NONE, entrypoint=["cat"])
    assert done.returncode == 0, done.stderr
    memory = [line.split(":", 2)[2] for line in done.stdout.splitlines() if line.split(":")[1] == "memory"]
    host_memory = [line.split(":", 2)[2] for line in on_host.splitlines() if line.split(":")[1] == "memory"]
    assert host_memory == [node.pids[pid]], on_host
    assert memory == ["/.." + node.pids[pid]], done.stdout


PLACE = """
import json, sys
from oomtop.collect.cgroupfs import discover_hierarchy
from oomtop.collect.oom_placement import Placement
from oomtop.collect.oom_samples import RecentSamples
from oomtop.model import KilledTask, OomEvent

pid = int(sys.argv[1])
hierarchy = discover_hierarchy("/host/sys/fs/cgroup", "/host/proc")
placement = Placement(hierarchy, "/host/proc", RecentSamples())
victim = KilledTask(pid=pid, comm=None)
event = OomEvent("memcg", None, None, None, None, victim, (victim,))
placed = placement.where_it_lived(event).task_cgroup
print(json.dumps({"task_cgroup": placed, "domain": placement.nearest_limit(placed) if placed else None}))
"""


def test_kill_placed_through_proc_cgroup_in_a_private_cgroup_namespace(node: Node, runc: Runc) -> None:
    """oomtop's own fallback for a kill report without cgroups (the kernel's rate limit), run in the container:
    no sample saw the victim, no wake-up listed it, so ``/proc/<pid>/cgroup`` decides."""
    pid = _pid(node, node.burstable, 16)
    done = runc.run(["-c", PLACE, str(pid)], NONE, entrypoint=["python3"])
    assert done.returncode == 0, done.stderr
    placed = json.loads(done.stdout)
    assert placed == {"task_cgroup": node.burstable, "domain": node.burstable}, placed


def headroom(line: str, label: str) -> bool:
    return line.startswith("oomtop_memory_headroom_bytes{") and label in line


def test_serve_scraped_from_the_host(node: Node, runc: Runc) -> None:
    """``oomtop serve`` as the DaemonSet runs it (the kernel log readable), on the host's loopback: the container
    has no network namespace of its own (hostNetwork)."""
    problems = []
    for _attempt in range(3):
        port = free_port()
        listen = ["serve", "--listen", f"127.0.0.1:{port}", "--host-root", "/host", "--interval", "0.5"]
        with runc.start(listen, KMSG) as serve:
            url = f"http://127.0.0.1:{port}"
            label = node.burstable.rsplit("/", 1)[-1][:12]
            series = f'container="{label}"'

            def scraped(url: str = url, series: str = series) -> bool:
                with contextlib.suppress(OSError):
                    status, body = http_get(url + "/metrics")
                    return status == 200 and any(headroom(line, series) for line in body.decode().splitlines())
                return False

            if serve.wait_until(scraped, 30):
                status, health = http_get(url + "/healthz")
                assert status == 200, health
                body = http_get(url + "/metrics")[1].decode()
                line = next(line for line in body.splitlines() if headroom(line, series))
                assert f'pod_uid="{node.pods[node.burstable]}"' in line, line
                assert 0 < float(line.rsplit(" ", 1)[1]) < 24 * MIB, line
                victim = [line for line in body.splitlines() if line.startswith("oomtop_predicted_victim_score{")]
                ours = [line for line in victim if 'domain="container"' in line and series in line]
                assert len(ours) == 1 and f'victim_container="{label}"' in ours[0], victim[:5]
                assert serve.stop() == 0, serve.describe()
                assert "Traceback" not in serve.stderr_text(), serve.describe()
                return
            problems.append(serve.describe())
            if "address already in use" not in serve.stderr_text().lower():
                break
    raise AssertionError("oomtop serve in the container was not scraped:\n" + "\n".join(problems))


def test_record_then_replay_on_the_host(node: Node, runc: Runc, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    mount = {"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind", "rw"]}
    done = runc.run(
        [
            "record",
            "/out/node.oomrec",
            "--duration",
            "1.5",
            "--interval",
            "0.5",
            "--host-root",
            "/host",
            "--kmsg",
            "none",
        ],
        NONE,
        mounts=(mount,),
    )
    assert done.returncode == 0, done.stderr
    recording = out / "node.oomrec"
    assert recording.stat().st_mode & 0o777 == 0o600
    replay = subprocess.run(
        [sys.executable, "-m", "oomtop", "replay", "--json", str(recording)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert replay.returncode == 0, replay.stderr
    samples = [json.loads(line) for line in replay.stdout.splitlines() if line.startswith("{")]
    samples = [s for s in samples if s.get("type") == "sample"]
    assert len(samples) >= 2, replay.stdout[:500]
    paths = {c["path"] for c in samples[-1]["cgroups"]}
    assert set(node.tree.created()) <= paths
    assert {t["pid"] for t in samples[-1]["tasks"]} >= set(node.pids)


def test_explain_reads_a_log_from_stdin(runc: Runc) -> None:
    """``dmesg | kubectl exec -i ... oomtop explain -``: the same as on the host."""
    host = subprocess.run(
        [sys.executable, "-m", "oomtop", "explain", "--json", "--metadata-root", "/", str(EXPLAIN_LOG)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert host.returncode == 0, host.stderr
    inside = runc.run(["explain", "--json", "--metadata-root", "/host", "-"], NONE, stdin=EXPLAIN_LOG.read_bytes())
    assert inside.returncode == 0, inside.stderr
    kills = [json.loads(line) for line in inside.stdout.splitlines()]
    assert len(kills) >= 2, inside.stdout[:500]
    assert kills == [json.loads(line) for line in host.stdout.splitlines()]


@pytest.mark.tmux
def test_live_view_in_a_terminal(node: Node, runc: Runc) -> None:
    """The live view as ``kubectl debug node/N -it --image=oomtop -- oomtop --host-root /host``: a terminal
    (runc's pty, under tmux), TERM given; the test's container found with the filter; q quits with status 0."""
    cid = runc.create_bundle(
        ["--host-root", "/host", "--kmsg", "none", "--interval", "0.5"],
        NONE,
        terminal=True,
        env=("TERM=xterm-256color",),
    )
    socket_name = f"oomtop-image-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", socket_name]
    run = " ".join(runc.command("run", "--bundle", str(runc.bundles / cid), cid))

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "ui"], capture_output=True, text=True).stdout

    def wait_for(text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in (shown := screen()):
            assert time.monotonic() < deadline, f"{text!r} never appeared; the screen was:\n{shown}"
            time.sleep(0.1)
        return shown

    label = node.burstable.rsplit("/", 1)[-1][:12]
    try:
        subprocess.run(
            [*tmux, "new-session", "-d", "-s", "ui", "-x", "160", "-y", "50", f"{run}; echo OOMTOP-EXIT $?; sleep 30"],
            check=True,
            env={k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")},
        )
        shown = wait_for("cgroup hybrid")
        assert HOSTNAME in shown or "oomtop" in shown
        subprocess.run([*tmux, "send-keys", "-t", "ui", "/"], check=True)
        time.sleep(0.3)
        subprocess.run([*tmux, "send-keys", "-t", "ui", "-l", label], check=True)
        subprocess.run([*tmux, "send-keys", "-t", "ui", "Enter"], check=True)
        shown = wait_for(f"filter: {label}")
        assert sum(label in line for line in shown.splitlines()) >= 2, shown  # the filter line and the row
        subprocess.run([*tmux, "send-keys", "-t", "ui", "q"], check=True)
        shown = wait_for("OOMTOP-EXIT")
        assert "OOMTOP-EXIT 0" in shown and "Traceback" not in shown, shown
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, check=False)
        runc.delete(cid)


# ------------------------------------------------------------------------------------------- OOM kills


@pytest.mark.kmsg
def test_events_reports_a_real_kill_with_pod_and_container(tree: TestHierarchy, runc: Runc, hog_binary: str) -> None:
    """``oomtop events --host-root /host --json`` in the container (CAP_SYSLOG and /dev/kmsg): a real OOM kill on
    the host, with its victim from the kernel log and its pod and container from the host's cgroups."""
    pod = tree.add_pod("burstable", 256 * MIB)
    container = tree.add_container(pod, 16 * MIB)
    with (
        runc.start(["events", "--json", "--host-root", "/host", "--interval", "0.5"], KMSG) as events,
        KmsgTail() as kmsg,
    ):
        events.wait_watching(tree, [pod.path, container], kmsg=True)
        wait_for_report_budget(1)
        kill = overshoot(tree, hog_binary, container, pod, "oomimg victim")
        events.wait_until(lambda: any(s.victim_pid == kill.pid for s in events.events()), 10)
        time.sleep(1.5)  # the next polls: a duplicate would come now
        kmsg.poll()
        problems = check_events(events.events(), [kill], tree, deadline_s=None, reported=kmsg.reported())
        assert not problems, "\n".join(problems) + "\n" + events.describe()
        assert events.stop() == 0, events.describe()
    assert "Traceback" not in events.stderr_text(), events.describe()
    assert "cgroup.event_control" not in events.stderr_text(), events.describe()


def test_events_without_kmsg(tree: TestHierarchy, runc: Runc, hog_binary: str) -> None:
    """No privilege at all, ``--kmsg none``: the kill with its pod and container (from the cgroup counters, woken
    by the v1 eventfd), without the victim's details, and one notice saying so."""
    pod = tree.add_pod("burstable", 256 * MIB)
    container = tree.add_container(pod, 16 * MIB)
    argv = ["events", "--json", "--host-root", "/host", "--interval", "0.5", "--kmsg", "none"]
    with runc.start(argv, NONE) as events:
        events.wait_watching(tree, [pod.path, container], kmsg=False)
        assert not any(f.endswith("kmsg") for f in events.open_files())
        kill = overshoot(tree, hog_binary, container, pod, "oomimg nolog")
        events.wait_until(lambda: any(container in s.paths() for s in events.events()), 10)
        time.sleep(1.5)
        problems = check_events(events.events(), [kill], tree, victim_known=False, deadline_s=None)
        assert not problems, "\n".join(problems) + "\n" + events.describe()
        assert events.stop() == 0, events.describe()
    told = [line for line in events.stderr_text().splitlines() if "kmsg" in line and "victim" in line]
    assert len(told) == 1, events.describe()
    assert "cgroup.event_control" not in events.stderr_text(), "uid 0 without capabilities registers wake-ups"


KMSG_PROBE = """
import os
for path in ("/dev/kmsg", "/host/dev/kmsg"):
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        print(path, "ok")
    except OSError as error:
        print(path, errno.errorcode[error.errno])
"""


def _dmesg_restricted() -> bool:
    with open("/proc/sys/kernel/dmesg_restrict", encoding="ascii") as handle:
        return handle.read().strip() == "1"


KMSG_CASES = [
    (NONE, {"/dev/kmsg": "ENOENT", "/host/dev/kmsg": "EPERM"}),
    # an unprivileged pod with capabilities: add: [SYSLOG]: the device cgroup refuses the device
    (Privileges("syslog-only", ("CAP_SYSLOG",)), {"/dev/kmsg": "ENOENT", "/host/dev/kmsg": "EPERM"}),
    # the device allowed, no CAP_SYSLOG: kernel.dmesg_restrict=1 refuses the read
    (Privileges("device-only", kmsg_node=True, kmsg_rule=True), {"/dev/kmsg": "EPERM", "/host/dev/kmsg": "EPERM"}),
    # the rule alone is what matters, not the node: the host's node under /host opens then
    (Privileges("rule+syslog", ("CAP_SYSLOG",), kmsg_rule=True), {"/dev/kmsg": "ENOENT", "/host/dev/kmsg": "ok"}),
    (KMSG, {"/dev/kmsg": "ok", "/host/dev/kmsg": "ok"}),
]


@pytest.mark.kmsg
@pytest.mark.parametrize(("privileges", "expected"), KMSG_CASES, ids=[p.name for p, _ in KMSG_CASES])
def test_kmsg_needs_exactly(runc: Runc, privileges: Privileges, expected: dict[str, str]) -> None:
    """The kernel log needs both CAP_SYSLOG and the device: either alone is refused."""
    if privileges.kmsg_rule and not privileges.capabilities and not _dmesg_restricted():
        expected = {path: "ok" for path in expected}  # kernel.dmesg_restrict=0: no capability is checked
    if privileges.kmsg_rule and not privileges.kmsg_node:
        expected = {**expected, "/dev/kmsg": "ENOENT"}
    done = runc.run(["-c", "import errno\n" + KMSG_PROBE], privileges, entrypoint=["python3"])
    assert done.returncode == 0, done.stderr
    got = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert got == expected, (privileges, done.stdout)


def _wakeup_notice(runc: Runc, tree: TestHierarchy, privileges: Privileges, host_options: tuple[str, ...]) -> str:
    """stderr of ``oomtop events --kmsg none`` once it has sampled (and so tried to register its wake-ups)."""
    pod = tree.add_pod("burstable", 64 * MIB)
    argv = ["events", "--json", "--host-root", "/host", "--interval", "0.5", "--kmsg", "none"]
    with runc.start(argv, privileges, host_options=host_options) as events:
        events.wait_watching(tree, [pod.path], kmsg=False)
        time.sleep(1.0)  # a poll or two
        assert events.stop() == 0, events.describe()
    return "\n".join(line for line in events.stderr_text().splitlines() if "kmsg" not in line)


def test_v1_wakeups_need_uid_0(tree: TestHierarchy, runc: Runc) -> None:
    """cgroup.event_control is mode 0200 (root's): uid 0 without capabilities registers the v1 wake-ups, another
    user cannot, and oomtop says so once."""
    assert _wakeup_notice(runc, tree, NONE, HOST_MOUNT) == ""
    other = _wakeup_notice(runc, tree, Privileges("uid 65534", uid=65534), HOST_MOUNT)
    assert other.count("cgroup.event_control is not writable") == 1, other


def test_v1_wakeups_lost_on_a_read_only_cgroupfs_are_told(tree: TestHierarchy, runc: Runc) -> None:
    notice = _wakeup_notice(runc, tree, NONE, ("rbind", "rro", "rprivate"))
    assert "cgroup.event_control" in notice, "no notice: kills wait for the next poll without a word"
