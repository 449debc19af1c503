"""Tests for oomtop.collect.identity: cgroup path parsing and node-local names."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest

from oomtop.collect.identity import MAX_CONFIG_BYTES, NodeNames, identify
from oomtop.model import CgroupKind, ContainerRef, Identity, PodRef, QosClass

UID = "1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"
UID2 = "9f8e7d6c-5b4a-4321-8fed-cba987654321"
STATIC_UID = "0f4c9bd7a1e2d3c4b5a6978877665544"  # static pods: 32-hex hash of the manifest, no dashes
CID = hashlib.sha256(b"app").hexdigest()
CID2 = hashlib.sha256(b"sidecar").hexdigest()
SID = hashlib.sha256(b"sandbox").hexdigest()
NODE = hashlib.sha256(b"kind-node").hexdigest()

CONTAINERD = "run/containerd/io.containerd.runtime.v2.task/k8s.io"
CRIO = "run/containers/storage/overlay-containers"


def sd(uid: str) -> str:
    return uid.replace("-", "_")


# ----------------------------------------------------------------------------------------- tree builders


def pod_logs(root: Path, ns: str, pod: str, uid: str, containers: tuple[str, ...] = ("app",)) -> Path:
    d = root / "var/log/pods" / f"{ns}_{pod}_{uid}"
    for c in containers:
        (d / c).mkdir(parents=True, exist_ok=True)
        (d / c / "0.log").write_text("")
    return d


def container_log(root: Path, pod: str, ns: str, ctr: str, cid: str, uid: str | None = None) -> Path:
    d = root / "var/log/containers"
    d.mkdir(parents=True, exist_ok=True)
    link = d / f"{pod}_{ns}_{ctr}-{cid}.log"
    target = f"/var/log/pods/{ns}_{pod}_{uid}/{ctr}/0.log" if uid else f"/var/lib/docker/containers/{cid}/x.log"
    os.symlink(target, link)
    return link


def bundle(root: Path, rel: str, cid: str, annotations: dict[str, object] | None, raw: bytes | None = None) -> Path:
    sub = "userdata/config.json" if rel == CRIO else "config.json"
    path = root / rel / cid / sub
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"ociVersion": "1.0.2", "process": {"args": ["/pause"]}, "annotations": annotations}
    path.write_bytes(raw if raw is not None else json.dumps(doc).encode())
    return path


def containerd(root: Path, cid: str, *, sandbox: bool = False, name: str | None = "app", uid: str = UID,
               pod: str = "web-0", ns: str = "shop", sid: str = SID) -> Path:  # fmt: skip
    ann = {
        "io.kubernetes.cri.container-type": "sandbox" if sandbox else "container",
        "io.kubernetes.cri.sandbox-id": sid,
        "io.kubernetes.cri.sandbox-name": pod,
        "io.kubernetes.cri.sandbox-namespace": ns,
        "io.kubernetes.cri.sandbox-uid": uid,
    }
    if name is not None:
        ann["io.kubernetes.cri.container-name"] = name
    return bundle(root, CONTAINERD, cid, ann)


def crio(root: Path, cid: str, *, sandbox: bool = False, name: str = "app", uid: str = UID,
         pod: str = "web-0", ns: str = "shop") -> Path:  # fmt: skip
    ann = {
        "io.kubernetes.cri-o.ContainerType": "sandbox" if sandbox else "container",
        "io.kubernetes.cri-o.SandboxID": SID,
        "io.kubernetes.pod.name": pod,
        "io.kubernetes.pod.namespace": ns,
        "io.kubernetes.pod.uid": uid,
        "io.kubernetes.container.name": "POD" if sandbox else name,
    }
    return bundle(root, CRIO, cid, ann)


# ------------------------------------------------------------------------------------------ path parsing

BURST_FS = f"/kubepods/burstable/pod{UID}"
BURST_SD = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{sd(UID)}.slice"


@pytest.mark.parametrize(
    ("path", "kind", "qos", "label"),
    [
        ("/", CgroupKind.ROOT, None, "/"),
        ("/kubepods", CgroupKind.KUBEPODS, None, "kubepods"),
        ("/kubepods/burstable", CgroupKind.QOS, QosClass.BURSTABLE, "burstable"),
        ("/kubepods/besteffort", CgroupKind.QOS, QosClass.BEST_EFFORT, "besteffort"),
        ("/kubepods.slice", CgroupKind.KUBEPODS, None, "kubepods"),
        ("/kubepods.slice/kubepods-burstable.slice", CgroupKind.QOS, QosClass.BURSTABLE, "burstable"),
        ("/kubepods.slice/kubepods-besteffort.slice", CgroupKind.QOS, QosClass.BEST_EFFORT, "besteffort"),
    ],
)
def test_structure_levels(path: str, kind: CgroupKind, qos: QosClass | None, label: str) -> None:
    assert identify(path) == Identity(kind=kind, qos=qos, label=label)


@pytest.mark.parametrize(
    ("path", "qos"),
    [
        (f"/kubepods/pod{UID}", QosClass.GUARANTEED),
        (f"/kubepods/burstable/pod{UID}", QosClass.BURSTABLE),
        (f"/kubepods/besteffort/pod{UID}", QosClass.BEST_EFFORT),
        (f"/kubepods.slice/kubepods-pod{sd(UID)}.slice", QosClass.GUARANTEED),
        (BURST_SD, QosClass.BURSTABLE),
        (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{sd(UID)}.slice", QosClass.BEST_EFFORT),
        (f"/kubepods/burstable/pod{UID}/", QosClass.BURSTABLE),  # trailing slash
    ],
)
def test_pods_every_qos_both_drivers(path: str, qos: QosClass) -> None:
    ident = identify(path)
    assert ident == Identity(
        kind=CgroupKind.POD, qos=qos, pod=PodRef(UID, qos), label=f"pod {UID}"
    )  # PodRef.label: how every view names an unnamed pod


def test_static_pod_uid_without_dashes() -> None:
    ident = identify(f"/kubepods.slice/kubepods-pod{STATIC_UID}.slice")
    assert ident.kind is CgroupKind.POD and ident.pod is not None and ident.pod.uid == STATIC_UID


@pytest.mark.parametrize(
    ("leaf", "runtime", "kind"),
    [
        (CID, None, CgroupKind.CONTAINER),
        (f"cri-containerd-{CID}", "containerd", CgroupKind.CONTAINER),
        (f"cri-containerd-{CID}.scope", "containerd", CgroupKind.CONTAINER),
        (f"crio-{CID}", "cri-o", CgroupKind.CONTAINER),
        (f"crio-{CID}.scope", "cri-o", CgroupKind.CONTAINER),
        (f"crio-conmon-{CID}", "cri-o", CgroupKind.CONMON),
        (f"crio-conmon-{CID}.scope", "cri-o", CgroupKind.CONMON),
        (f"docker-{CID}", "docker", CgroupKind.CONTAINER),
        (f"docker-{CID}.scope", "docker", CgroupKind.CONTAINER),
    ],
)
@pytest.mark.parametrize("pod_path", [BURST_FS, BURST_SD])
def test_container_leaves(pod_path: str, leaf: str, runtime: str | None, kind: CgroupKind) -> None:
    ident = identify(f"{pod_path}/{leaf}")
    assert ident.kind is kind
    assert ident.qos is QosClass.BURSTABLE
    assert ident.pod == PodRef(UID, QosClass.BURSTABLE)
    assert ident.container == ContainerRef(CID, runtime)
    assert ident.label == (f"conmon:{CID[:12]}" if kind is CgroupKind.CONMON else CID[:12])


def test_guaranteed_container() -> None:
    ident = identify(f"/kubepods/pod{UID}/{CID}")
    assert ident.kind is CgroupKind.CONTAINER and ident.qos is QosClass.GUARANTEED
    assert ident.pod == PodRef(UID, QosClass.GUARANTEED)


@pytest.mark.parametrize("below", ["container", "a/b/c", "init.scope"])
def test_below_a_container_is_that_container(below: str) -> None:
    leaf = identify(f"{BURST_SD}/crio-{CID}.scope")
    assert identify(f"{BURST_SD}/crio-{CID}.scope/{below}") == leaf


@pytest.mark.parametrize(
    "prefix",
    [
        f"/docker/{NODE}/kubepods",  # kind, cgroupfs
        f"/system.slice/docker-{NODE}.scope/kubepods",
        "/kubelet/kubepods",
        "/a/b/c/kubepods",
    ],
)
def test_kubepods_under_prefix_cgroupfs(prefix: str) -> None:
    assert identify(prefix).kind is CgroupKind.KUBEPODS
    assert identify(f"{prefix}/besteffort").qos is QosClass.BEST_EFFORT
    ident = identify(f"{prefix}/burstable/pod{UID}/{CID}")
    assert ident.kind is CgroupKind.CONTAINER and ident.pod == PodRef(UID, QosClass.BURSTABLE)
    assert ident.container == ContainerRef(CID, None)


@pytest.mark.parametrize(
    ("kubepods", "stem"),
    [
        ("/kubelet.slice/kubelet-kubepods.slice", "kubelet-kubepods"),  # kind, systemd, --cgroup-root=/kubelet
        (f"/system.slice/docker-{NODE}.scope/kubelet.slice/kubelet-kubepods.slice", "kubelet-kubepods"),
        (f"/docker/{NODE}/kubepods.slice", "kubepods"),
    ],
)
def test_kubepods_under_prefix_systemd(kubepods: str, stem: str) -> None:
    assert identify(kubepods).kind is CgroupKind.KUBEPODS
    qos = f"{kubepods}/{stem}-burstable.slice"
    assert identify(qos) == Identity(kind=CgroupKind.QOS, qos=QosClass.BURSTABLE, label="burstable")
    ident = identify(f"{qos}/{stem}-burstable-pod{sd(UID)}.slice/cri-containerd-{CID}.scope")
    assert ident.kind is CgroupKind.CONTAINER and ident.container == ContainerRef(CID, "containerd")
    assert ident.pod == PodRef(UID, QosClass.BURSTABLE)
    guaranteed = identify(f"{kubepods}/{stem}-pod{sd(UID)}.slice")
    assert guaranteed.kind is CgroupKind.POD and guaranteed.qos is QosClass.GUARANTEED


def test_first_kubepods_wins_for_nested_clusters() -> None:
    outer = f"/kubepods/burstable/pod{UID}/{CID}"
    assert identify(f"{outer}/kubepods/besteffort/pod{UID2}/{CID2}") == identify(outer)


@pytest.mark.parametrize(
    "path",
    [
        "/system.slice",
        "/system.slice/containerd.service",
        "/system.slice/kubelet.service",
        "/init.scope",
        "/user.slice/user-1000.slice/session-3.scope",
        "/user.slice/user-1000.slice/user@1000.service/app.slice",
        "/system.slice/var-lib-kubelet.mount",
        "/system.slice/docker.socket",
        "/machine.slice/libpod-abc.scope",
    ],
)
def test_systemd_units(path: str) -> None:
    assert identify(path) == Identity(kind=CgroupKind.SYSTEM, label=path.rsplit("/", 1)[1])


@pytest.mark.parametrize(
    "path", [f"/docker/{NODE}", f"/system.slice/docker-{NODE}.scope", f"/docker/{NODE}/system.slice/containerd.service"]
)
def test_docker_outside_kubernetes(path: str) -> None:
    assert identify(path) == Identity(kind=CgroupKind.DOCKER, container=ContainerRef(NODE, "docker"), label=NODE[:12])


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/docker", "docker"),
        ("/docker/buildkit", "buildkit"),
        ("/docker/abc123", "abc123"),  # short ids are not Docker containers
        ("/machine/qemu-1-vm", "qemu-1-vm"),
        ("/lxc/box", "box"),
        ("/kubepods/garbage", "garbage"),
        ("/kubepods/burstable/notapod/x", "x"),
        (f"/kubepods.slice/kubepods-burstable.slice/pod-{UID}", f"pod-{UID}"),
        ("", ""),
    ],
)
def test_plain(path: str, label: str) -> None:
    assert identify(path) == Identity(kind=CgroupKind.PLAIN, label=label)


def test_garbage_never_raises() -> None:
    tokens = [
        "kubepods", "kubepods.slice", "-kubepods.slice", "burstable", "besteffort", "kubepods-burstable.slice",
        f"pod{UID}", "pod", "pod-", f"kubepods-pod{sd(UID)}.slice", ".slice", ".scope", "crio-", "crio-conmon-",
        "cri-containerd-", "docker-", "docker", CID, CID[:63] + "g", "", ".", "..", "\x00", "\n", " ", "é", "💥",
        "\udcff", "\u202e", "/" * 3, "x" * 5000, "pod" + "_" * 40, "docker-.scope", "crio-conmon-.scope",
    ]  # fmt: skip
    rng = random.Random(1234)
    odd = [
        "", "/", "//", "\x00", "/\x00/", "kubepods", "/kubepods/pod", "/kubepods/burstable/podXYZ",
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod.slice", "/\udcff\udcfe", "/" + "a/" * 5000,
        f"{BURST_FS}/crio-", f"{BURST_FS}/.scope", f"{BURST_SD}/crio-conmon-.scope", "💥/💥", "\\kubepods\\pod",
    ]  # fmt: skip
    odd += ["/".join(rng.choice(tokens) for _ in range(rng.randint(0, 8))) for _ in range(3000)]
    names = NodeNames.empty()
    for path in odd:
        for n in (None, names):
            ident = identify(path, n)
            assert isinstance(ident, Identity) and isinstance(ident.label, str)
            if ident.kind in (CgroupKind.QOS, CgroupKind.POD, CgroupKind.CONTAINER, CgroupKind.CONMON):
                assert ident.qos is not None


def test_non_string_input_falls_back_to_plain() -> None:
    assert identify(None).kind is CgroupKind.PLAIN  # type: ignore[arg-type]
    assert identify(b"/kubepods").kind is CgroupKind.PLAIN  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- NodeNames


def test_empty_and_missing_root(tmp_path: Path) -> None:
    for names in (NodeNames.empty(), NodeNames.load(str(tmp_path / "nope")), NodeNames.load("/\x00bad")):
        assert names.pod(UID) is None and names.container(CID) is None and names.container_names(UID) == ()
        assert identify(f"{BURST_FS}/{CID}", names) == identify(f"{BURST_FS}/{CID}")


def test_names_from_var_log_pods(tmp_path: Path) -> None:
    pod_logs(tmp_path, "shop", "web-0", UID, ("app", "istio-proxy"))
    pod_logs(tmp_path, "kube-system", "kube-apiserver-node1", STATIC_UID, ("kube-apiserver",))
    (tmp_path / "var/log/pods/not-a-pod-dir").mkdir()
    (tmp_path / "var/log/pods/ns_file_9f8e7d6c").write_text("a file, not a pod dir")
    names = NodeNames.load(str(tmp_path))
    assert names.pod(UID) == ("web-0", "shop")
    assert names.pod(UID.upper()) == ("web-0", "shop")
    assert names.container_names(UID) == ("app", "istio-proxy")
    assert names.pod(STATIC_UID) == ("kube-apiserver-node1", "kube-system")
    assert names.pod("9f8e7d6c") is None
    pod = identify(BURST_SD, names)
    assert pod.label == "shop/web-0" and pod.pod == PodRef(UID, QosClass.BURSTABLE, "web-0", "shop")
    ctr = identify(f"{BURST_FS}/{CID}", names)
    assert ctr.pod == PodRef(UID, QosClass.BURSTABLE, "web-0", "shop") and ctr.label == CID[:12]


def test_names_from_var_log_containers(tmp_path: Path) -> None:
    pod_logs(tmp_path, "shop", "web-0", UID)
    container_log(tmp_path, "web-0", "shop", "my-app", CID, UID)
    container_log(tmp_path, "db-0", "data", "pg", CID2)  # target without uid (dockershim style)
    d = tmp_path / "var/log/containers"
    (d / "garbage.log").write_text("")
    (d / f"a_b-{CID}.log").write_text("")  # too few fields
    (d / f"a_b_c-{CID[:40]}.log").write_text("")  # short id
    names = NodeNames.load(str(tmp_path))
    info = names.container(CID)
    assert info is not None and (info.name, info.pod_uid, info.pod_name, info.pod_namespace) == (
        "my-app", UID, "web-0", "shop",
    )  # fmt: skip
    ident = identify(f"{BURST_SD}/cri-containerd-{CID}.scope", names)
    assert ident.label == "my-app" and ident.container == ContainerRef(CID, "containerd", "my-app")
    # No /var/log/pods entry for db-0: the pod's names come from the container's log name.
    other = identify(f"/kubepods/besteffort/pod{UID2}/{CID2}", names)
    assert other.label == "pg" and other.pod == PodRef(UID2, QosClass.BEST_EFFORT, "db-0", "data")
    assert names.pod(UID2) is None


def test_log_link_uid_falls_back_to_name_join(tmp_path: Path) -> None:
    pod_logs(tmp_path, "shop", "web-0", UID)
    container_log(tmp_path, "web-0", "shop", "app", CID)  # link target does not name the pod dir
    info = NodeNames.load(str(tmp_path)).container(CID)
    assert info is not None and info.pod_uid == UID


def test_containerd_annotations_and_sandbox(tmp_path: Path) -> None:
    containerd(tmp_path, SID, sandbox=True, name=None)
    containerd(tmp_path, CID, name="app")
    names = NodeNames.load(str(tmp_path))
    assert names.pod(UID) == ("web-0", "shop")  # from annotations alone
    info = names.container(CID)
    assert info is not None and info.runtime == "containerd" and info.sandbox_id == SID and not info.is_sandbox
    ctr = identify(f"{BURST_FS}/{CID}", names)  # bare leaf: runtime guessed from where the bundle is
    assert ctr.kind is CgroupKind.CONTAINER and ctr.container == ContainerRef(CID, "containerd", "app")
    assert ctr.label == "app" and ctr.pod == PodRef(UID, QosClass.BURSTABLE, "web-0", "shop")
    sb = identify(f"{BURST_SD}/cri-containerd-{SID}.scope", names)
    assert sb.kind is CgroupKind.SANDBOX and sb.qos is QosClass.BURSTABLE
    assert sb.container == ContainerRef(SID, "containerd", None, True) and sb.label == f"sandbox:{SID[:12]}"
    assert identify(f"{BURST_SD}/cri-containerd-{SID}.scope").kind is CgroupKind.CONTAINER  # no metadata


def test_sandbox_known_only_from_a_containers_sandbox_id(tmp_path: Path) -> None:
    containerd(tmp_path, CID, name="app")  # the sandbox's own bundle is missing
    ident = identify(f"{BURST_FS}/{SID}", NodeNames.load(str(tmp_path)))
    assert ident.kind is CgroupKind.SANDBOX and ident.pod is not None and ident.pod.name == "web-0"


def test_crio_annotations_sandbox_and_conmon(tmp_path: Path) -> None:
    crio(tmp_path, SID, sandbox=True)
    crio(tmp_path, CID, name="app")
    names = NodeNames.load(str(tmp_path))
    assert names.pod(UID) == ("web-0", "shop")
    # An empty CRI-O sandbox (no infra process): identified by its annotations, not by its tasks.
    sb = identify(f"{BURST_SD}/crio-{SID}.scope", names)
    assert sb.kind is CgroupKind.SANDBOX and sb.container == ContainerRef(SID, "cri-o", "POD", True)
    assert sb.pod == PodRef(UID, QosClass.BURSTABLE, "web-0", "shop")
    ctr = identify(f"{BURST_SD}/crio-{CID}.scope", names)
    assert ctr.kind is CgroupKind.CONTAINER and ctr.label == "app"
    mon = identify(f"{BURST_SD}/crio-conmon-{CID}.scope", names)
    assert mon.kind is CgroupKind.CONMON and mon.label == "conmon:app"
    assert mon.container == ContainerRef(CID, "cri-o", "app")
    bare = identify(f"{BURST_FS}/{CID}", names)
    assert bare.container is not None and bare.container.runtime == "cri-o"


def test_config_json_wins_over_log_names(tmp_path: Path) -> None:
    container_log(tmp_path, "web-0", "shop", "from-log", CID, UID)
    container_log(tmp_path, "web-0", "shop", "only-log", CID2, UID)
    containerd(tmp_path, CID, name="from-config")
    names = NodeNames.load(str(tmp_path))
    assert names.container(CID).name == "from-config"  # type: ignore[union-attr]
    assert names.container(CID2).name == "only-log"  # type: ignore[union-attr]


def test_annotations_parsed_generically(tmp_path: Path) -> None:
    # CRI-O's keys in a containerd bundle (and the reverse) are still understood.
    bundle(tmp_path, CONTAINERD, CID, {"io.kubernetes.pod.name": "x", "io.kubernetes.pod.namespace": "y",
                                       "io.kubernetes.pod.uid": UID2, "io.kubernetes.container.name": "c"})  # fmt: skip
    bundle(tmp_path, CRIO, CID2, {"io.kubernetes.cri.container-name": "d",
                                  "io.kubernetes.cri.container-type": "sandbox"})  # fmt: skip
    names = NodeNames.load(str(tmp_path))
    assert names.pod(UID2) == ("x", "y") and names.container(CID).name == "c"  # type: ignore[union-attr]
    assert names.container(CID2).is_sandbox  # type: ignore[union-attr]


def test_untrusted_names_kept_as_is(tmp_path: Path) -> None:
    weird = "ap\u202ep\x1b[31m💥\n"
    containerd(tmp_path, CID, name=weird, pod="p\x00d", ns="n/s")
    names = NodeNames.load(str(tmp_path))
    ident = identify(f"{BURST_FS}/{CID}", names)
    assert ident.label == weird and ident.pod is not None and (ident.pod.name, ident.pod.namespace) == ("p\x00d", "n/s")


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"annotations": {"io.kubernetes.cri.container-name": "\xff\xfe"}}',  # invalid UTF-8
        b"",
        b"[1, 2, 3]",
        b'{"annotations": ["a"]}',
        b'{"annotations": {"io.kubernetes.cri.container-name": 5, "io.kubernetes.cri.sandbox-uid": null}}',
        b"[" * 100000,
        b'{"annotations": {"io.kubernetes.cri.container-name": "big"}, "pad": "' + b"x" * MAX_CONFIG_BYTES + b'"}',
    ],
)
def test_malformed_config_json_is_skipped(tmp_path: Path, raw: bytes) -> None:
    bundle(tmp_path, CONTAINERD, CID, None, raw=raw)
    containerd(tmp_path, CID2, name="good")
    names = NodeNames.load(str(tmp_path))
    info = names.container(CID)
    # the bundle directory says a container exists; nothing is taken from a config that is not a JSON object of
    # string annotations: no name, no pod
    assert info is None or (info.name, info.pod_uid, info.pod_name, info.pod_namespace) == (None,) * 4, info
    assert names.container(CID2).name == "good"  # type: ignore[union-attr]


def test_hostile_files_where_metadata_is_expected(tmp_path: Path) -> None:
    (tmp_path / CONTAINERD / CID / "config.json").mkdir(parents=True)  # a directory instead of the file
    (tmp_path / CONTAINERD / SID).mkdir()
    os.mkfifo(tmp_path / CONTAINERD / SID / "config.json")  # opening it blocking would hang the load
    unreadable = containerd(tmp_path, "f" * 64, name="secret")
    unreadable.chmod(0)
    (tmp_path / CRIO).mkdir(parents=True)
    (tmp_path / CRIO / CID2).write_text("a file where the bundle dir should be")
    (tmp_path / "var/log").mkdir(parents=True)
    (tmp_path / "var/log/pods").write_text("a file where a directory should be")
    (tmp_path / "var/log/containers").symlink_to(tmp_path / "loop")
    (tmp_path / "loop").symlink_to(tmp_path / "var/log/containers")
    crio(tmp_path, CID, name="ok")  # the good source next to the broken ones still counts
    names = NodeNames.load(str(tmp_path))  # must neither raise nor hang on the FIFO
    sandbox = names.container(SID)  # its config.json is a FIFO: not read; known only as the crio container's sandbox
    assert sandbox is None or sandbox.name is None, sandbox
    assert names.container(CID).name == "ok"  # type: ignore[union-attr]
    if os.geteuid() != 0:  # root reads mode-000 files anyway
        assert names.container("f" * 64) is None


def test_refresh_sees_new_entries_and_reuses_parsed_bundles(tmp_path: Path) -> None:
    path = containerd(tmp_path, CID, name="app")
    names = NodeNames.load(str(tmp_path))
    assert names.container(CID2) is None
    containerd(tmp_path, CID2, name="late")
    pod_logs(tmp_path, "data", "db-0", UID2)
    path.write_bytes(b"garbage")  # a parsed bundle is not read again
    fresh = names.refresh()
    assert fresh.container(CID2).name == "late"  # type: ignore[union-attr]
    assert fresh.container(CID).name == "app"  # type: ignore[union-attr]
    assert fresh.pod(UID2) == ("db-0", "data")
    assert names.container(CID2) is None  # snapshots are immutable
    (tmp_path / CONTAINERD / CID / "config.json").unlink()
    (tmp_path / CONTAINERD / CID).rmdir()
    assert fresh.refresh().container(CID) is None  # a removed bundle is forgotten


def test_load_names_every_pod_of_a_busy_node(tmp_path: Path) -> None:
    for n in range(100):
        uid = f"{n:08x}-0000-4000-8000-000000000000"
        pod_logs(tmp_path, "ns", f"pod-{n}", uid, ("app", "side"))
        for c in ("app", "side", "sb"):
            cid = hashlib.sha256(f"{n}{c}".encode()).hexdigest()
            containerd(tmp_path, cid, name=c, uid=uid, pod=f"pod-{n}", ns="ns", sandbox=c == "sb")
            container_log(tmp_path, f"pod-{n}", "ns", c, cid, uid)
    names = NodeNames.load(str(tmp_path))
    assert names.pod("00000063-0000-4000-8000-000000000000") == ("pod-99", "ns")
    assert all(names.pod(f"{n:08x}-0000-4000-8000-000000000000") == (f"pod-{n}", "ns") for n in range(100))
