"""The lab's runtimes without cgroups: the :class:`~oomtop.lab.runtime.Runtime` Protocol both implement, the
pod and container records they share (:mod:`oomtop.lab.runtime`), the bundle annotations that make oomtop name
the lab's pods, the OCI spec runc gets (:mod:`oomtop.lab.oci`) and the plain runtime starting and stopping a
process.  Real containers run in tests/test_lab.py.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path

import pytest

from oomtop.lab import bundle
from oomtop.lab.kubelet import MIB, Resources
from oomtop.lab.oci import oci_spec
from oomtop.lab.procs import LabProcess, Pipes
from oomtop.lab.runtime import Container, Pod, Runtime, container_id, cri_annotations
from oomtop.lab.runtime_plain import PlainRuntime
from oomtop.lab.runtime_runc import RuncRuntime
from oomtop.model import QosClass

UID = "2a7c3c86-1f6b-4e1c-9d1a-4b1f0c2d9e11"
SANDBOX_ID = "c" * 64


def _pod() -> tuple[Pod, Container, Container]:
    pod = Pod("seed", "lab", UID, QosClass.BURSTABLE, f"/p/pod{UID}", 123 * MIB, sandbox_id=SANDBOX_ID)
    app = Container(pod, "app", "a" * 64, f"/p/pod{UID}/{'a' * 64}", Resources(64 * MIB, 123 * MIB), 938, 938)
    sandbox = Container(pod, "pause", SANDBOX_ID, f"/p/pod{UID}/{SANDBOX_ID}", Resources(), -998, -998, sandbox=True)
    pod.containers["app"] = app
    pod.sandbox = sandbox
    return pod, app, sandbox


# ----------------------------------------------------------------------------------------------- records


def test_container_ids_are_containerds() -> None:
    first, second = container_id(), container_id()
    assert re.fullmatch("[0-9a-f]{64}", first) and first != second


def test_records_name_themselves() -> None:
    pod, app, sandbox = _pod()
    assert pod.label == "lab/seed" and app.label == "lab/seed/app" and app.limit_bytes == 123 * MIB
    assert pod.sandbox_pid is None  # not started yet
    sandbox.processes.append(LabProcess("pause", "sandbox", sandbox.path, Pipes(), pid=4242))
    try:
        assert pod.sandbox_pid == 4242
    finally:
        sandbox.processes[0].close()


def test_bundle_annotations_name_the_pod_and_its_sandbox() -> None:
    _pod_record, app, sandbox = _pod()
    assert cri_annotations(app) == {
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.sandbox-id": SANDBOX_ID,
        "io.kubernetes.cri.sandbox-name": "seed",
        "io.kubernetes.cri.sandbox-namespace": "lab",
        "io.kubernetes.cri.sandbox-uid": UID,
        "io.kubernetes.cri.container-name": "app",
    }
    notes = cri_annotations(sandbox)
    assert (
        notes["io.kubernetes.cri.container-type"] == "sandbox" and notes["io.kubernetes.cri.sandbox-id"] == SANDBOX_ID
    )
    assert "io.kubernetes.cri.container-name" not in notes


@pytest.mark.parametrize("runtime", [PlainRuntime, RuncRuntime])
def test_both_runtimes_have_the_protocols_members(runtime: type) -> None:
    """mypy checks this where the session picks a runtime; this says which member broke, at test time."""
    members = sorted(name for name in vars(Runtime) if not name.startswith("_"))
    assert members == ["close", "creates_cgroups", "name", "prepare", "start", "stop_container"]
    assert isinstance(runtime.name, str) and isinstance(runtime.creates_cgroups, bool)
    for name in ("close", "prepare", "start", "stop_container"):
        wanted = list(inspect.signature(vars(Runtime)[name]).parameters)
        assert list(inspect.signature(getattr(runtime, name)).parameters) == wanted, name


# -------------------------------------------------------------------------------------------------- OCI


def _spec(**changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "argv": ["/usr/bin/python3", "-m", "oomtop.lab.hog"],
        "env": {"PATH": "/usr/bin", "LANG": "C.UTF-8"},
        "adj": 938,
        "rootfs": "/run/oomtop-lab/rootfs",
        "cgroups_path": "/oomtop-lab/kubepods/burstable/podX/abc",
        "limit_bytes": 123 * MIB,
        "oom_group": True,
        "annotations": {"io.kubernetes.cri.container-type": "container"},
        "hostname": None,
        "join_pid": 4242,
        "extra_binds": ["/opt/python"],
    }
    values.update(changes)
    return oci_spec(**values)  # type: ignore[arg-type]


def test_a_container_joins_its_sandboxs_namespaces() -> None:
    spec = _spec()
    linux = spec["linux"]
    assert isinstance(linux, dict)
    assert linux["namespaces"] == [
        {"type": "pid", "path": "/proc/4242/ns/pid"},
        {"type": "ipc", "path": "/proc/4242/ns/ipc"},
        {"type": "uts", "path": "/proc/4242/ns/uts"},
        {"type": "network", "path": "/proc/4242/ns/net"},
        {"type": "mount"},
    ]
    assert linux["cgroupsPath"] == "/oomtop-lab/kubepods/burstable/podX/abc"
    assert linux["resources"] == {
        "devices": [{"allow": False, "access": "rwm"}],
        "memory": {"limit": 123 * MIB},
        "unified": {"memory.oom.group": "1"},
    }
    assert "hostname" not in spec


def test_a_sandbox_makes_the_namespaces() -> None:
    spec = _spec(join_pid=None, limit_bytes=None, oom_group=False, hostname="seed")
    linux = spec["linux"]
    assert isinstance(linux, dict)
    assert [n["type"] for n in linux["namespaces"]] == ["pid", "ipc", "uts", "mount", "network"]
    assert all("path" not in n for n in linux["namespaces"])
    assert linux["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}
    assert spec["hostname"] == "seed"


def test_the_process_and_its_filesystem() -> None:
    spec = _spec()
    process = spec["process"]
    assert isinstance(process, dict)
    assert process["oomScoreAdj"] == 938 and process["args"] == ["/usr/bin/python3", "-m", "oomtop.lab.hog"]
    assert process["env"] == ["PATH=/usr/bin", "LANG=C.UTF-8"] and process["noNewPrivileges"] is True
    assert spec["root"] == {"path": "/run/oomtop-lab/rootfs", "readonly": True}
    mounts = spec["mounts"]
    assert isinstance(mounts, list)
    assert [m["destination"] for m in mounts] == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/sys", "/opt/python"]
    assert mounts[-1] == {
        "destination": "/opt/python",
        "type": "bind",
        "source": "/opt/python",
        "options": ["rbind", "ro"],
    }
    assert json.loads(json.dumps(spec)) == spec  # what bundle.write_config writes


# ------------------------------------------------------------------------------------------- plain runtime


def test_plain_runtime_starts_writes_the_bundle_and_stops(tmp_path: Path) -> None:
    runtime = PlainRuntime(str(tmp_path))
    runtime.prepare()
    _pod_record, app, _sandbox = _pod()
    proc = LabProcess("waiter", "process", app.path, Pipes(), container=app)
    app.processes.append(proc)
    try:
        runtime.start(app, proc, [sys.executable, "-c", "import sys; sys.stdin.read()"], first=True)
        proc.pipes.child_started()
        assert proc.pid > 0 and proc.alive() and proc.ticks is not None
        config = Path(bundle.bundle_dir(str(tmp_path), app.id), "config.json")
        assert json.loads(config.read_text())["annotations"] == cri_annotations(app)
        assert runtime.stop_container(app) == []
        assert not proc.alive() and not config.exists()
        assert runtime.close() == []
    finally:
        if proc.alive():
            proc.kill()
        proc.close()
