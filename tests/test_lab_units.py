"""`oomtop lab` without a kernel to break: kubelet's arithmetic, the cgroup layout, the scenario generator, the
kernel-log reader, the hog's protocol, the lab's scoping of Samples, cleanup's refusal to cross a mount, and the
two collector races the lab found (a cgroup made while its parent is being scanned; v1's cached cgroup.procs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from oomtop.collect.cgroupfs import MemoryHierarchy
from oomtop.lab import cleanup, kubelet
from oomtop.lab.killcheck import KillCheck
from oomtop.lab.kubelet import (
    MIB,
    AdjPolicy,
    Resources,
    allocatable,
    container_adj,
    parse_quantity,
    pod_limit,
    pod_qos,
)
from oomtop.lab.layout import CgroupLayout, CgroupTree, Driver
from oomtop.lab.observe import event_is_ours, scope_sample
from oomtop.lab.procs import LabProcess, Pipes, psutil_process, start_ticks
from oomtop.lab.rounds import MARGIN_MIB, MIN_VICTIM_MIB, plan_rounds
from oomtop.lab.truth import GroupKill, Killed, Summary, parse_record
from oomtop.model import KilledTask, OomEvent, QosClass
from tests.fakehost import FakeHost, FakeProcess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UID = "2a7c3c86-1f6b-4e1c-9d1a-4b1f0c2d9e11"
CID = "ab" * 32
GI = 1 << 30


# ---------------------------------------------------------------------------------------------- kubelet


@pytest.mark.parametrize(
    "text, value",
    [
        ("123Mi", 123 * MIB),
        ("1Gi", GI),
        ("100M", 100_000_000),
        ("512Ki", 512 << 10),
        ("1000000", 1_000_000),
        (" 2Gi ", 2 * GI),
        ("1.5Gi", 3 * GI // 2),
    ],
)
def test_quantities(text: str, value: int) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "12Qi", "-1Mi", "Mi", "1 Mi 2"])
def test_bad_quantities(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_format_quantity() -> None:
    assert kubelet.format_quantity(123 * MIB) == "123Mi"
    assert kubelet.format_quantity(GI) == "1Gi"
    assert kubelet.format_quantity(1536 << 10) == "1536Ki"
    assert kubelet.format_quantity(1000) == "1000"


def test_qos_classes_and_pod_limits() -> None:
    guaranteed = [Resources(100 * MIB, 100 * MIB), Resources(None, 50 * MIB)]  # a missing request defaults to the limit
    assert pod_qos(guaranteed) is QosClass.GUARANTEED
    assert pod_limit(guaranteed) == 150 * MIB
    burstable = [Resources(64 * MIB, 123 * MIB)]
    assert pod_qos(burstable) is QosClass.BURSTABLE and pod_limit(burstable) == 123 * MIB
    partly = [Resources(64 * MIB, 123 * MIB), Resources(32 * MIB, None)]
    assert pod_qos(partly) is QosClass.BURSTABLE and pod_limit(partly) is None  # one container without a limit
    assert pod_qos([Resources(), Resources()]) is QosClass.BEST_EFFORT and pod_limit([Resources()]) is None


def test_container_adj_is_kubelets_formula() -> None:
    assert container_adj(QosClass.BURSTABLE, Resources(64 * MIB, 123 * MIB), GI) == 938  # 1000 - 1000*64/1024
    assert container_adj(QosClass.BURSTABLE, Resources(192 * MIB, 320 * MIB), 384 * MIB) == 500
    assert container_adj(QosClass.BURSTABLE, Resources(GI, 2 * GI), GI) == 3  # clamped at 3
    assert container_adj(QosClass.BURSTABLE, Resources(1, None), GI) == 999  # clamped at 999
    assert container_adj(QosClass.GUARANTEED, Resources(MIB, MIB), GI) == -997
    assert container_adj(QosClass.BEST_EFFORT, Resources(), GI) == 1000
    assert kubelet.SANDBOX_ADJ == -998
    assert allocatable(384 * MIB) == 352 * MIB


def test_adj_policy() -> None:
    free = AdjPolicy(-1000)
    assert free.effective(-998) == -998 and not free.restricted and free.note() is None
    limited = AdjPolicy(0)
    assert limited.effective(-997) == 0 and limited.effective(-998) == 0 and limited.effective(938) == 938
    assert limited.restricted
    note = limited.note()
    assert note is not None and "below 0" in note and "CAP_SYS_RESOURCE" in note


def test_probe_lowest_adj_leaves_the_value_as_it_was() -> None:
    before = kubelet.read_adj(os.getpid())
    lowest = kubelet.probe_lowest_adj()
    assert kubelet.read_adj(os.getpid()) == before
    assert -1000 <= lowest <= before
    if lowest > -1000:  # the kernel refuses just below it (EACCES), and allows it
        assert kubelet.write_adj(os.getpid(), lowest) == lowest
        with pytest.raises(PermissionError):
            kubelet.write_adj(os.getpid(), lowest - 1)
        kubelet.write_adj(os.getpid(), before)


# ----------------------------------------------------------------------------------------------- layout


def test_cgroupfs_layout() -> None:
    layout = CgroupLayout(Driver.CGROUPFS)
    assert layout.kubepods == "/oomtop-lab/kubepods"
    assert layout.pod(QosClass.GUARANTEED, UID) == f"/oomtop-lab/kubepods/pod{UID}"
    assert layout.pod(QosClass.BURSTABLE, UID) == f"/oomtop-lab/kubepods/burstable/pod{UID}"
    assert layout.pod(QosClass.BEST_EFFORT, UID) == f"/oomtop-lab/kubepods/besteffort/pod{UID}"
    assert layout.container(f"/oomtop-lab/kubepods/pod{UID}", CID) == f"/oomtop-lab/kubepods/pod{UID}/{CID}"


def test_systemd_layout() -> None:
    layout = CgroupLayout(Driver.SYSTEMD)
    escaped = UID.replace("-", "_")
    assert layout.kubepods == "/oomtop-lab/kubepods.slice"
    assert layout.pod(QosClass.GUARANTEED, UID) == f"/oomtop-lab/kubepods.slice/kubepods-pod{escaped}.slice"
    assert layout.pod(QosClass.BURSTABLE, UID) == (
        f"/oomtop-lab/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{escaped}.slice"
    )
    assert layout.pod(QosClass.BEST_EFFORT, UID) == (
        f"/oomtop-lab/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{escaped}.slice"
    )
    assert layout.container("/p.slice", CID) == f"/p.slice/cri-containerd-{CID}.scope"


@pytest.mark.parametrize("driver", list(Driver))
@pytest.mark.parametrize("qos", list(QosClass))
def test_oomtop_reads_the_lab_layout_as_kubelets(driver: Driver, qos: QosClass) -> None:
    """The lab's paths are what identity.py parses as pod and container (below any prefix)."""
    from oomtop.collect.identity import identify
    from oomtop.model import CgroupKind

    layout = CgroupLayout(driver)
    pod = layout.pod(qos, UID)
    assert identify(pod).kind is CgroupKind.POD and identify(pod).pod.uid == UID and identify(pod).qos is qos
    container = identify(layout.container(pod, CID))
    assert container.kind is CgroupKind.CONTAINER and container.container.id == CID
    assert identify(layout.kubepods).kind is CgroupKind.KUBEPODS


def test_tree_refuses_cgroups_it_does_not_own(tmp_path: Path) -> None:
    tree = CgroupTree(MemoryHierarchy(1, str(tmp_path), "v1"), CgroupLayout())
    for path in ("/", "/kubepods", "/oomtop-lab2", "/process_api/x", "/oomtop-labx/kubepods"):
        with pytest.raises(ValueError):
            tree.fs(path)
    assert tree.fs("/oomtop-lab/kubepods") == f"{tmp_path}/oomtop-lab/kubepods"


def _v2_dir(path: Path, subtree: str = "") -> None:
    path.mkdir(exist_ok=True)
    (path / "cgroup.subtree_control").write_text(subtree)
    (path / "memory.max").write_text("max\n")


def test_v2_enables_memory_below_every_level_it_makes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On v2 a child only has memory files when its parent has +memory in cgroup.subtree_control."""
    root = tmp_path
    _v2_dir(root, "cpu memory pids\n")
    tree = CgroupTree(MemoryHierarchy(2, str(root), "v2"), CgroupLayout())
    real_mkdir = os.mkdir

    def mkdir(path, mode=0o777):  # type: ignore[no-untyped-def]
        real_mkdir(path, mode)
        _v2_dir(Path(path))

    monkeypatch.setattr(os, "mkdir", mkdir)
    tree.check_root()
    tree.create("/oomtop-lab", 512 * MIB)
    tree.create("/oomtop-lab/kubepods", 480 * MIB)
    assert (root / "oomtop-lab/cgroup.subtree_control").read_text() == "+memory"  # written before kubepods
    assert (root / "oomtop-lab/kubepods/memory.max").read_text() == str(480 * MIB)
    assert (root / "oomtop-lab/kubepods/cgroup.subtree_control").read_text() == ""  # no child yet
    assert tree.created == ["/oomtop-lab", "/oomtop-lab/kubepods"]


def test_v2_root_without_memory_is_refused(tmp_path: Path) -> None:
    from oomtop.lab import LabError

    _v2_dir(tmp_path, "cpu pids\n")
    with pytest.raises(LabError, match="memory controller is not enabled"):
        CgroupTree(MemoryHierarchy(2, str(tmp_path), "v2"), CgroupLayout()).check_root()


# --------------------------------------------------------------------------------------------- scenarios


@pytest.mark.parametrize("lowest", [0, -1000])
def test_random_rounds_are_decisive_and_repeatable(lowest: int) -> None:
    policy = AdjPolicy(lowest)
    plans = plan_rounds(1, 20, policy, 512)
    assert [p.describe() for p in plans] == [p.describe() for p in plan_rounds(1, 20, policy, 512)]
    assert {p.kind for p in plans} == {"container", "kubepods"}
    for plan in plans:
        assert plan.lead_mib >= MARGIN_MIB, plan.describe()
        winner = plan.containers[plan.winner[0]].hogs[plan.winner[1]]
        assert winner >= MIN_VICTIM_MIB, plan.describe()
    assert plan_rounds(2, 5, policy, 512)[0].describe() != plans[0].describe()


def test_random_round_winners_include_every_qos_class() -> None:
    qos = set()
    for seed in range(1, 6):
        for plan in plan_rounds(seed, 20, AdjPolicy(0), 512):
            qos.add(plan.pods[plan.containers[plan.winner[0]].pod].qos)
    assert QosClass.BEST_EFFORT in qos and QosClass.BURSTABLE in qos


# -------------------------------------------------------------------------------------------- kernel log


def test_kernel_log_records() -> None:
    killed = parse_record(
        b"3,261778,3744032637,-;Memory cgroup out of memory: Killed process 3992 (oomb030) "
        b"total-vm:42032kB, anon-rss:16384kB, file-rss:592kB, shmem-rss:0kB, UID:0 pgtables:120kB "
        b"oom_score_adj:0"
    )
    assert killed == Killed(3992, "oomb030", 3744.032637, 261778)
    summary = parse_record(
        b"6,1,2000000,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,"
        b"mems_allowed=0,oom_memcg=/oomtop-lab/kubepods/burstable/podX,task_memcg=/oomtop-lab/"
        b"kubepods/burstable/podX/abc,task=app-main,pid=42,uid=0"
    )
    assert summary == Summary(42, "/oomtop-lab/kubepods/burstable/podX", "/oomtop-lab/kubepods/burstable/podX/abc", 2.0)
    group = parse_record(
        b"6,2,3000000,-;Tasks in /oomtop-lab/kubepods/pod1/c are going to be killed due to memory.oom.group set"
    )
    assert group == GroupKill("/oomtop-lab/kubepods/pod1/c", 3.0)
    assert parse_record(b"6,3,4000000,-;something else") is None
    assert parse_record(b"garbage") is None


# ------------------------------------------------------------------------------------------- the hog


def _hog(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "oomtop.lab.hog", *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_hog_waits_for_go_then_allocates_grows_and_ends_with_its_stdin() -> None:
    hog = _hog("--name", "lab-test-hog", "--mib", "24", "--step-mib", "2")
    try:
        time.sleep(0.3)
        with open(f"/proc/{hog.pid}/comm", encoding="ascii") as handle:
            assert handle.read().strip() == "lab-test-hog"
        idle = _rss_mib(hog.pid)
        assert idle < 20, "it allocated before 'go'"
        assert hog.stdin and hog.stdout
        hog.stdin.write(b"go\n")
        hog.stdin.flush()
        assert hog.stdout.readline() == b"R\n"
        assert _rss_mib(hog.pid) >= idle + 23
        hog.stdin.write(b"grow 8 1 0\n")
        hog.stdin.flush()
        assert hog.stdout.readline() == b"R\n"
        assert _rss_mib(hog.pid) >= idle + 31
        hog.stdin.close()
        assert hog.wait(timeout=10) == 0
    finally:
        if hog.poll() is None:
            hog.kill()
            hog.wait()


def test_pause_hog_allocates_nothing() -> None:
    hog = _hog("--pause")
    out, err = hog.communicate(b"go\n", timeout=20)
    assert out == b"R\n" and hog.returncode == 0, err


def test_hog_imports_nothing_heavy() -> None:
    code = (
        "import sys, oomtop.lab.hog\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'psutil', 'aiofiles') "
        "or m.startswith('oomtop.') and m not in ('oomtop.lab', 'oomtop.lab.hog'))\n"
        "print(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------- scoping


def test_samples_are_narrowed_to_the_lab(tmp_path: Path) -> None:
    from oomtop.collect.collector import Collector

    host = FakeHost(tmp_path, layout="v1")
    host.add_cgroup("/")
    host.add_cgroup("/system.slice", pids=(5,))
    host.add_cgroup("/oomtop-lab", limit=GI)
    host.add_cgroup("/oomtop-lab/kubepods", pids=(7,))
    host.add_process(FakeProcess(5, comm="sshd"), None)
    host.add_process(FakeProcess(7, comm="hog"), None)
    with Collector(host.config()) as collector:
        sample = collector.sample()
    scoped = scope_sample(sample, "/oomtop-lab", hostname="oomtop-lab")
    assert [c.path for c in scoped.cgroups] == ["/", "/oomtop-lab", "/oomtop-lab/kubepods"]
    assert [t.comm for t in scoped.tasks] == ["hog"]
    assert scoped.node.hostname == "oomtop-lab"
    assert next(c for c in scoped.cgroups if c.path == "/").pids == ()


def test_the_demo_drops_the_lab_prefix(tmp_path: Path) -> None:
    from oomtop.collect.collector import Collector
    from oomtop.lab.observe import strip_event, strip_sample

    host = FakeHost(tmp_path, layout="v1")
    host.add_cgroup("/")
    host.add_cgroup("/oomtop-lab", limit=GI)
    host.add_cgroup("/oomtop-lab/kubepods", limit=GI - 32 * MIB)
    host.add_cgroup(f"/oomtop-lab/kubepods/pod{UID}", pids=(7,), limit=123 * MIB)
    host.add_process(FakeProcess(7, comm="hog"), None)
    with Collector(host.config()) as collector:
        sample = scope_sample(collector.sample(), "/oomtop-lab")
    stripped = strip_sample(sample, "/oomtop-lab")
    assert [c.path for c in stripped.cgroups] == ["/", "/kubepods", f"/kubepods/pod{UID}"]
    assert stripped.tasks[0].cgroup == f"/kubepods/pod{UID}"
    from oomtop.rank import predict

    assert predict(stripped).by_domain[f"/kubepods/pod{UID}"].victim.pid == 7
    event = OomEvent(
        kind="memcg",
        time=None,
        kernel_time_s=None,
        oom_cgroup=f"/oomtop-lab/kubepods/pod{UID}",
        task_cgroup=None,
        victim=KilledTask(pid=7, comm="hog"),
        killed=(),
    )
    assert strip_event(event, "/oomtop-lab").oom_cgroup == f"/kubepods/pod{UID}"


def test_only_the_labs_kills_are_kept() -> None:
    def event(**fields):  # type: ignore[no-untyped-def]
        base = {
            "kind": "memcg",
            "time": None,
            "kernel_time_s": None,
            "oom_cgroup": None,
            "task_cgroup": None,
            "victim": KilledTask(pid=None, comm=None),
            "killed": (),
        }
        base.update(fields)
        return OomEvent(**base)

    assert event_is_ours(event(oom_cgroup="/oomtop-lab/kubepods/pod1"), "/oomtop-lab", set())
    assert not event_is_ours(event(oom_cgroup="/oomtop-test-1/kubepods"), "/oomtop-lab", set())
    assert not event_is_ours(event(oom_cgroup="/"), "/oomtop-lab", set())
    rate_limited = event(victim=KilledTask(pid=42, comm="app-main"))  # no header: only the pid says whose it is
    assert event_is_ours(rate_limited, "/oomtop-lab", {42})
    assert not event_is_ours(rate_limited, "/oomtop-lab", {43})


def test_kill_checks() -> None:
    right = KillCheck(1, 10, "a", [(10, "a")], 1.0, "/d", "kernel log", predicted_pid=10, expected_pid=10)
    assert right.right and right.as_expected
    assert not replace(right, predicted_pid=11).right
    group = replace(right, killed=[(10, "a"), (11, "b")], group_path="/d/c", predicted_group=(10, 11))
    assert group.right and not replace(group, predicted_group=(10,)).right
    assert not replace(right, expected_pid=12).as_expected
    assert replace(right, expected_pid=12, follow_up=True).as_expected


# -------------------------------------------------------------------------------------------- cleanup


def test_release_never_enters_the_rootfs(tmp_path: Path) -> None:
    """The lab directory's rootfs is (while the lab runs) a bind mount of the host's /: removing the lab directory
    must never descend into it, mounted or not."""
    lab = tmp_path / "lab"
    (lab / "logs").mkdir(parents=True)
    (lab / "logs" / "x.log").write_text("x")
    (lab / "run/containerd/io.containerd.runtime.v2.task/k8s.io/abc").mkdir(parents=True)
    (lab / "run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/config.json").write_text("{}")
    precious = lab / "rootfs" / "etc"
    precious.mkdir(parents=True)
    (precious / "passwd").write_text("root:x:0:0")
    problems = cleanup.release(str(lab))
    assert (precious / "passwd").read_text() == "root:x:0:0"
    assert any("rootfs" in p for p in problems)
    assert sorted(os.listdir(lab)) == ["rootfs"]
    (precious / "passwd").unlink()
    precious.rmdir()
    assert cleanup.release(str(lab)) == [] and not lab.exists()


def test_mount_points_under_nothing_mounted() -> None:
    assert cleanup.mount_points_under("/nonexistent-oomtop-path") == []


@pytest.mark.root
def test_mount_points_under(tmp_path: Path) -> None:
    """Mounts at, below and beside a directory (a sibling whose name starts alike, a name with a space) in a
    mount namespace of the test's own: exactly those at or below it are listed, in mount order."""
    base = tmp_path / "lab"
    mounts = 'for d in lab lab/rootfs \'lab/with space\' lab-sibling; do mkdir -p "$d"; mount -t tmpfs none "$d"; done'
    show = "import sys; from oomtop.lab import cleanup; print(cleanup.mount_points_under(sys.argv[1]))"
    script = f"set -e; {mounts}; {sys.executable} -c '{show}' lab"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == repr([str(base), str(base / "rootfs"), str(base / "with space")])


# ------------------------------------------------------------------------------------------------- CLI


def _lab(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from oomtop.cli import main

    status = main(["lab", *argv])
    return status, capsys.readouterr().err


def test_lab_without_root_is_one_sentence(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    status, err = _lab(["seed", "--headless"], monkeypatch, capsys)
    assert status == 2
    assert err.count("\n") == 1 and "needs root" in err
    status, err = _lab(["--clean"], monkeypatch, capsys)
    assert status == 2 and "needs root" in err


def test_lab_without_memory_controller(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from oomtop.lab import runner

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(runner, "discover_hierarchy", lambda *_a: None)
    status, err = _lab(["qos", "--headless"], monkeypatch, capsys)
    assert status == 2 and err.count("\n") == 1 and "memory controller" in err


def test_lab_usage_errors(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = _lab([], monkeypatch, capsys)
    assert status == 2 and "which scenario" in err
    status, err = _lab(["seed", "--clean"], monkeypatch, capsys)
    assert status == 2 and "--clean takes no scenario" in err
    status, err = _lab(["qos", "--headless", "--capacity", "64Mi"], monkeypatch, capsys)
    assert status == 2 and "too small" in err
    status, err = _lab(["qos", "--headless", "--capacity", "lots"], monkeypatch, capsys)
    assert status == 2 and "not a memory size" in err


def test_replay_demo_json() -> None:
    """The shipped recording opens anywhere: every sample and the kill, which oomtop predicted."""
    done = subprocess.run(
        [sys.executable, "-m", "oomtop", "replay", "--demo", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    samples = [line for line in lines if line.get("type") == "sample"]
    kills = [line for line in lines if line.get("type") == "event"]
    assert len(samples) >= 20
    assert kills and kills[0]["victim"]["comm"] == "app-main"
    assert kills[0]["predicted_victim_pid"] == kills[0]["victim"]["pid"]
    labels = {cgroup.get("label") for sample in samples for cgroup in sample["cgroups"]}
    assert "lab/seed" in labels  # names resolved from the lab's containerd bundles
    assert samples and {sample["node"]["hostname"] for sample in samples} == {"oomtop-lab"}


def test_replay_demo_and_a_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from oomtop.cli import main

    assert main(["replay", "--demo", "x.oomrec", "--json"]) == 2
    assert "not both" in capsys.readouterr().err


def test_demo_is_package_data() -> None:
    text = Path(REPO, "pyproject.toml").read_text()
    assert '"oomtop.demo"' in text and "*.oomrec" in text
    assert os.path.getsize(Path(REPO, "oomtop/demo/seed.oomrec")) < 400 * 1024


# -------------------------------------------------------------------------- collector races the lab found


def test_collector_sees_a_cgroup_made_while_it_lists_the_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod's sandbox cgroup can appear between the collector's listing of the new pod directory and its inotify
    watch on it: the watch must come first, or the child is never seen."""
    from oomtop.collect.collector import Collector

    host = FakeHost(tmp_path, layout="v1")
    host.add_cgroup("/")
    pod, child = f"/kubepods/burstable/pod{UID}", f"/kubepods/burstable/pod{UID}/{CID}"
    host.add_cgroup("/kubepods")
    host.add_cgroup("/kubepods/burstable")
    with Collector(host.config()) as collector:
        collector.sample()
        host.add_cgroup(pod)
        real_scandir = os.scandir
        made = []

        def scandir(path):  # type: ignore[no-untyped-def]
            entries = list(real_scandir(path))
            if str(path).endswith(f"pod{UID}") and not made:
                made.append(host.add_cgroup(child))  # right after the listing
            return iter(entries)

        monkeypatch.setattr(os, "scandir", scandir)
        collector.sample()
        monkeypatch.setattr(os, "scandir", real_scandir)
        assert made
        paths = [c.path for c in collector.sample().cgroups]
    assert child in paths


# ------------------------------------------------------------------------------ process control (psutil)


def _lab_process(pid: int, ticks: int | None) -> LabProcess:
    """A LabProcess as a runc-started one is (no Popen): known by pid and start time alone."""
    pipes = Pipes()
    pipes.close()
    return LabProcess("under-test", "process", "/t", pipes, pid=pid, ticks=ticks)


def _children(parent: int, timeout_s: float = 10.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    while not (children := psutil.Process(parent).children()):
        assert time.monotonic() < deadline, f"pid {parent} started no child"
        time.sleep(0.01)
    return children


def test_a_lab_process_is_its_pid_and_start_time_and_nothing_else() -> None:
    """A LabProcess whose start time does not match the process at its pid (a reused pid) is dead to the lab: it
    is not alive and its kill() reaches nothing; the real one is killed, waited for and reaped."""
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        ticks = start_ticks(sleeper.pid)
        assert ticks is not None
        ours = _lab_process(sleeper.pid, ticks)
        impostor = _lab_process(sleeper.pid, ticks + 1)
        assert ours.alive() and not impostor.alive()
        impostor.kill()
        assert impostor.wait_dead(0.0)  # nothing of its own to wait for
        assert ours.alive() and sleeper.poll() is None, "a kill went to a process with another start time"
        ours.kill()
        assert ours.stopped_by_lab and ours.wait_dead(10.0) and not ours.alive()
        assert not psutil.pid_exists(sleeper.pid), "the lab's own child was left a zombie"
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        sleeper.wait()


def test_a_zombie_another_process_must_reap_counts_as_dead() -> None:
    """Under runc a pod's processes can be the pause process's children, not the lab's: once one exits it is dead
    to the lab at once, though it stays a zombie until its own parent reaps it (which the lab must not do)."""
    # sh starts a short sleep, then becomes a long sleep that never reaps it: a zombie whose parent is not us.
    parent = subprocess.Popen(["sh", "-c", "sleep 2 & exec sleep 30"])
    try:
        (child,) = _children(parent.pid)
        proc = _lab_process(child.pid, start_ticks(child.pid))
        assert proc.alive()
        assert proc.wait_dead(10.0) and not proc.alive()
        assert child.status() == psutil.STATUS_ZOMBIE  # not reaped by the lab: it is not the lab's child
    finally:
        parent.kill()
        parent.wait()


def test_a_lab_process_that_never_started_is_not_alive() -> None:
    never = _lab_process(0, None)
    assert not never.alive() and never.wait_dead(0.0) and never.process() is None
    never.kill()  # nothing to kill, no error
    assert psutil_process(os.getpid(), None) is None
    assert psutil_process(os.getpid(), start_ticks(os.getpid())) == psutil.Process()
