"""The collector on fixture hosts: v1, v2 and hybrid layouts, vanishing and malformed inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oomtop.collect.collector import Collector
from oomtop.model import CgroupKind, QosClass, Sample
from tests.fakehost import FakeHost, FakeProcess

POD = "8a2f4c1e-5b6d-4e7f-9a0b-1c2d3e4f5a6b"
CTR = "3f" * 32


def sample_of(host: FakeHost, **config: object) -> Sample:
    with Collector(host.config(**config)) as collector:
        return collector.sample()


def by_path(sample: Sample) -> dict:
    return {cgroup.path: cgroup for cgroup in sample.cgroups}


def kube_host(tmp_path: Path, layout: str) -> FakeHost:
    host = FakeHost(tmp_path, layout=layout)
    host.add_cgroup("/kubepods", usage=300 << 20)
    host.add_cgroup("/kubepods/burstable", usage=200 << 20)
    host.add_cgroup(f"/kubepods/burstable/pod{POD}", usage=120 << 20, limit=256 << 20)
    host.add_cgroup(
        f"/kubepods/burstable/pod{POD}/{CTR}",
        usage=100 << 20,
        limit=128 << 20,
        inactive_file=10 << 20,
        oom_kills=2,
        failcnt=5,
        peak=127 << 20,
    )
    host.add_process(
        FakeProcess(101, comm="web", rss_anon_kb=80 * 1024, adj=900), f"/kubepods/burstable/pod{POD}/{CTR}"
    )
    host.add_process(
        FakeProcess(102, comm="helper", rss_anon_kb=10 * 1024, adj=900), f"/kubepods/burstable/pod{POD}/{CTR}"
    )
    return host


@pytest.mark.parametrize("layout", ["v1", "v2", "hybrid"])
def test_figures_and_identity_on_every_layout(tmp_path: Path, layout: str) -> None:
    host = kube_host(tmp_path, layout)
    sample = sample_of(host)
    assert sample.node.cgroup_version == (2 if layout == "v2" else 1)
    assert sample.node.cgroup_layout == layout
    assert sample.node.mem_total_bytes == 16 << 30
    assert sample.node.hostname == "fixture-node"
    cgroups = by_path(sample)
    container = cgroups[f"/kubepods/burstable/pod{POD}/{CTR}"]
    assert container.usage_bytes == 100 << 20
    assert container.limit_bytes == 128 << 20
    assert container.working_set_bytes == 90 << 20
    assert container.peak_bytes == 127 << 20
    assert container.oom_kills == 2
    assert container.failcnt == 5
    assert container.pids == (101, 102)
    assert container.identity.kind is CgroupKind.CONTAINER
    assert container.identity.pod is not None and container.identity.pod.uid == POD
    assert container.identity.qos is QosClass.BURSTABLE
    assert cgroups["/kubepods"].limit_bytes is None  # unlimited is None, never a giant number
    assert cgroups["/"].identity.kind is CgroupKind.ROOT
    tasks = {task.pid: task for task in sample.tasks}
    assert tasks[101].rss_anon_bytes == 80 << 20
    assert tasks[101].rss_file_bytes == 256 << 10
    assert tasks[101].pgtables_bytes == 48 << 10
    assert tasks[101].oom_score_adj == 900
    assert tasks[101].oom_score == 667
    assert tasks[101].cgroup == container.path
    assert tasks[101].cmdline == "app --serve"
    if layout == "v2":
        assert container.oom_group is False
        assert container.pressure is not None and container.pressure.some_avg10 == 0.0
        assert container.oom_kills_local == 2
    else:
        assert container.oom_group is None and container.pressure is None


def test_v2_high_pressure_and_group(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, layout="v2")
    host.add_cgroup(
        "/work",
        usage=50 << 20,
        limit=100 << 20,
        high=80 << 20,
        oom_group=True,
        pressure="some avg10=1.50 avg60=0.75 avg300=0.10 total=12345\n"
        "full avg10=0.50 avg60=0.25 avg300=0.05 total=678\n",
    )
    cgroup = by_path(sample_of(host))["/work"]
    assert cgroup.high_bytes == 80 << 20
    assert cgroup.oom_group is True
    assert cgroup.pressure is not None
    assert (cgroup.pressure.some_avg10, cgroup.pressure.full_total_us) == (1.5, 678)
    assert cgroup.swap_limit_bytes is None  # memory.swap.max "max"


def test_mount_table_finds_the_memory_hierarchy(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, layout="hybrid")
    (host.proc / "self").mkdir()
    (host.proc / "self/mounts").write_text(
        "cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0\n"
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n"
    )
    sample = sample_of(host)
    assert sample.node.cgroup_layout == "hybrid" and sample.node.cgroup_version == 1


def test_vanished_pid_is_dropped_not_an_error(tmp_path: Path) -> None:
    host = kube_host(tmp_path, "v1")
    host.remove_process(102)  # still listed in cgroup.procs, gone from /proc
    sample = sample_of(host)
    assert {task.pid for task in sample.tasks} == {101}


def test_cgroup_removed_between_polls(tmp_path: Path) -> None:
    host = kube_host(tmp_path, "v2")
    with Collector(host.config()) as collector:
        first = collector.sample()
        assert f"/kubepods/burstable/pod{POD}/{CTR}" in by_path(first)
        host.remove_cgroup(f"/kubepods/burstable/pod{POD}/{CTR}")
        second = collector.sample()
    assert f"/kubepods/burstable/pod{POD}/{CTR}" not in by_path(second)
    assert f"/kubepods/burstable/pod{POD}" in by_path(second)


def test_new_cgroup_is_seen_on_the_next_poll(tmp_path: Path) -> None:
    host = kube_host(tmp_path, "v1")
    with Collector(host.config()) as collector:
        collector.sample()
        host.add_cgroup("/kubepods/besteffort", usage=1 << 20)
        host.add_cgroup(f"/kubepods/besteffort/pod{POD[:-1]}7/{'ab' * 32}", usage=1 << 20)
        second = collector.sample()
    new = by_path(second)[f"/kubepods/besteffort/pod{POD[:-1]}7/{'ab' * 32}"]
    assert new.identity.qos is QosClass.BEST_EFFORT


def test_changed_figures_are_reread_and_unchanged_objects_reused(tmp_path: Path) -> None:
    host = kube_host(tmp_path, "v1")
    path = f"/kubepods/burstable/pod{POD}/{CTR}"
    with Collector(host.config(slow_interval_s=0.0)) as collector:
        first = collector.sample()
        host.processes[101].rss_anon_kb = 90 * 1024
        host.write_process(host.processes[101])
        host.set_file(path, "memory.usage_in_bytes", f"{110 << 20}\n")
        second = collector.sample()
    old, new = ({t.pid: t for t in s.tasks} for s in (first, second))
    assert new[101].rss_anon_bytes == 90 << 20
    assert new[102] is old[102]  # nothing changed: the same immutable object
    assert by_path(second)[path].usage_bytes == 110 << 20


def test_pid_reuse_never_mixes_two_processes(tmp_path: Path) -> None:
    host = kube_host(tmp_path, "v1")
    with Collector(host.config(slow_interval_s=0.0, keep_open=False)) as collector:
        first = {t.pid: t for t in collector.sample().tasks}
        host.remove_process(102)
        host.add_process(FakeProcess(102, comm="other", start_ticks=99999, rss_anon_kb=5 * 1024), cgroup=None)
        second = {t.pid: t for t in collector.sample().tasks}
    assert first[102].comm == "helper"
    assert second[102].comm == "other" and second[102].start_ticks == 99999
    assert second[102].key != first[102].key


def test_kernel_threads_and_zombies(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, layout="v1")
    host.add_process(FakeProcess(2, comm="kthreadd", kernel_thread=True))
    host.add_process(FakeProcess(50, comm="defunct", zombie=True))
    host.add_process(FakeProcess(60, comm="live"))
    sample = sample_of(host)
    tasks = {task.pid: task for task in sample.tasks}
    assert 2 not in tasks and 2 not in by_path(sample)["/"].pids  # kernel threads are never candidates
    assert tasks[50].has_memory is False
    assert tasks[60].has_memory is True


@pytest.mark.parametrize("content", ["", "garbage\n", "\xff\xfe", "12 34\n", "-5\n"])
def test_malformed_cgroup_files_never_raise(tmp_path: Path, content: str) -> None:
    host = kube_host(tmp_path, "v1")
    path = f"/kubepods/burstable/pod{POD}/{CTR}"
    for name in (
        "memory.stat",
        "memory.oom_control",
        "memory.limit_in_bytes",
        "memory.max_usage_in_bytes",
        "memory.failcnt",
        "cgroup.procs",
    ):
        host.set_file(path, name, content)
    sample = sample_of(host)
    cgroup = by_path(sample)[path]
    assert cgroup.usage_bytes == 100 << 20


def test_malformed_process_files_never_raise(tmp_path: Path) -> None:
    host = kube_host(tmp_path, "v2")
    (host.proc / "101/status").write_bytes(b"\xff\xfe garbage\nRssAnon:\tnot-a-number kB\n")
    (host.proc / "101/oom_score").write_text("")
    (host.proc / "101/oom_score_adj").write_text("x\n")
    (host.proc / "102/stat").write_text("garbage")
    sample = sample_of(host)
    tasks = {task.pid: task for task in sample.tasks}
    assert 102 not in tasks  # unreadable stat: dropped
    assert tasks[101].rss_anon_bytes == 0 and tasks[101].oom_score is None


def test_hostile_names_kept_literally(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, layout="v1")
    host.add_process(FakeProcess(70, comm="a) (b\x1b[31m", cmdline=b"[red]x\0\xff\0"))
    task = sample_of(host).tasks[0]
    assert task.comm == "a) (b\x1b[31m"
    assert task.cmdline == "[red]x \\xff"


def test_redacted_cmdline(tmp_path: Path) -> None:
    host = kube_host(tmp_path, "v1")
    plain = {task.pid: task.cmdline for task in sample_of(host).tasks}
    redacted = {task.pid: task.cmdline for task in sample_of(host, redact_cmdline=True).tasks}
    assert sorted(plain) == [101, 102] and all(plain.values())  # command lines to hide
    assert sorted(redacted) == [101, 102] and set(redacted.values()) == {""}


def test_no_memory_controller_still_lists_processes(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, layout="v2")
    (host.cgroup_root / "cgroup.controllers").write_text("cpu io pids\n")
    host.add_process(FakeProcess(80, comm="lonely"), cgroup=None)
    sample = sample_of(host)
    assert sample.cgroups == ()
    assert [task.pid for task in sample.tasks] == [80]
    assert any("memory controller" in warning for warning in sample.warnings)


def test_empty_crio_sandbox_and_systemd_driver(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, layout="v2")
    uid = POD.replace("-", "_")
    base = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice"
    for path in ("/kubepods.slice", "/kubepods.slice/kubepods-burstable.slice", base):
        host.add_cgroup(path)
    host.add_cgroup(f"{base}/crio-{'cd' * 32}.scope")  # an empty CRI-O sandbox: no processes
    host.add_cgroup("/system.slice")
    host.add_cgroup("/system.slice/kubelet.service", pids=())
    cgroups = by_path(sample_of(host))
    crio = cgroups[f"{base}/crio-{'cd' * 32}.scope"]
    assert crio.pids == () and crio.identity.container is not None
    assert crio.identity.container.runtime == "cri-o"
    assert crio.identity.pod is not None and crio.identity.pod.uid == POD
    assert cgroups["/system.slice/kubelet.service"].identity.kind is CgroupKind.SYSTEM


def test_unreadable_files_are_reported_not_raised(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Run the collector as an unprivileged user (root reads files whatever their mode)."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="oomtop-nonroot-"))
    try:
        os.chmod(base, 0o755)
        host = kube_host(base, "v1")
        os.chmod(host.cgroup_dir(f"/kubepods/burstable/pod{POD}/{CTR}") / "memory.stat", 0)
        os.chmod(host.proc / "102/stat", 0)
        code = (
            "import json, sys\n"
            "from oomtop.collect.collector import Collector, CollectorConfig\n"
            "c = Collector(CollectorConfig(cgroup_root=sys.argv[1], procfs_root=sys.argv[2], host_root=sys.argv[3]))\n"
            "s = c.sample()\n"
            "print(json.dumps({'warnings': list(s.warnings), 'pids': sorted(t.pid for t in s.tasks)}))\n"
        )
        repo = str(Path(__file__).resolve().parent.parent)
        demote = None
        if os.geteuid() == 0:

            def demote() -> None:
                os.setgid(65534)
                os.setuid(65534)

        # The collector needs only the standard library, so any Python the unprivileged user may run will do.
        result = None
        for python in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
            try:
                result = subprocess.run(
                    [python, "-c", code, str(host.cgroup_root), str(host.proc), str(host.root)],
                    capture_output=True,
                    text=True,
                    preexec_fn=demote,
                    check=False,
                    env={"PATH": "/usr/bin:/bin", "PYTHONPATH": repo},
                )
                break
            except (PermissionError, FileNotFoundError):
                continue
        assert result is not None, "no Python interpreter the unprivileged user may run"
        assert result.returncode == 0, result.stderr
        outcome = json.loads(result.stdout)
        assert any("permission denied" in warning for warning in outcome["warnings"]), outcome
        assert outcome["pids"] == [101]
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def test_status_memory_block_parsing_across_kernels() -> None:
    from oomtop.collect.procfs import parse_status_line, parse_status_memory

    modern = (
        b"Name:\tx\nUid:\t1000\t1000\t1000\t1000\nVmRSS:\t  300 kB\nRssAnon:\t  200 kB\nRssFile:\t  96 kB\n"
        b"RssShmem:\t   4 kB\nVmData:\t 10 kB\nVmStk:\t 1 kB\nVmExe:\t 1 kB\nVmLib:\t 1 kB\nVmPTE:\t  48 kB\n"
        b"VmSwap:\t   8 kB\nHugetlbPages:\t 0 kB\n"
    )
    memory = parse_status_memory(modern)
    assert (memory.anon, memory.file, memory.shmem, memory.pte, memory.swap) == (
        200 << 10,
        96 << 10,
        4 << 10,
        48 << 10,
        8 << 10,
    )
    older = modern.replace(b"VmSwap:", b"VmPMD:\t  12 kB\nVmSwap:")  # 4.x kernels have VmPMD in between
    assert parse_status_memory(older).pte == 48 << 10
    assert parse_status_memory(b"Name:\tkworker\nState:\tI\n").has_memory is False
    assert parse_status_memory(modern[:120]).has_memory is True  # cut mid-block: what is there is read
    assert parse_status_line(modern, b"Name:") == b"x"
    assert parse_status_line(modern, b"Uid:") == b"1000\t1000\t1000\t1000"
    assert parse_status_line(modern, b"Gid:") is None


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_a_living_cgroup_dropped_by_a_failed_read_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """A read error other than ENOENT/EACCES (seen mid-kill) drops the cgroup from that Sample (its last figures
    are not passed off as live ones), and the slow tick finds it again while its directory is there: inotify
    reports only new directories, so on v1 it used to be lost for good."""
    import errno

    from oomtop.collect import files

    host = kube_host(tmp_path, layout)
    path = f"/kubepods/burstable/pod{POD}/{CTR}"
    usage_file = "memory.usage_in_bytes" if layout == "v1" else "memory.current"
    real_read = files.KeptFile.read
    failing = {"on": False}

    def read(self: files.KeptFile) -> bytes:
        if failing["on"] and self.path.endswith(f"{CTR}/{usage_file}"):
            raise OSError(errno.EIO, "Input/output error")
        return real_read(self)

    monkeypatch.setattr(files.KeptFile, "read", read)
    with Collector(host.config(slow_interval_s=0.0)) as collector:  # every poll is a slow tick
        assert path in by_path(collector.sample())
        failing["on"] = True
        assert path not in by_path(collector.sample())
        failing["on"] = False
        host.set_file(path, usage_file, f"{110 << 20}\n")
        again = by_path(collector.sample())
        assert path in again and again[path].usage_bytes == 110 << 20
        failing["on"] = True
        host.remove_cgroup(path)
        assert path not in by_path(collector.sample())
        failing["on"] = False
        assert path not in by_path(collector.sample())  # gone for real: not looked for again
        assert not collector._unready


def test_the_node_is_named_by_the_host_in_a_private_uts_namespace(tmp_path: Path) -> None:
    """oomtop in a pod with its own UTS namespace reads the pod's name in <procfs>/sys/kernel/hostname; when the
    host's init (PID 1 of that procfs) lives in another UTS namespace, the host's /etc/hostname names the node."""
    from oomtop.collect.node import node_hostname

    proc, root = tmp_path / "proc", tmp_path / "host"
    (proc / "sys/kernel").mkdir(parents=True)
    (proc / "sys/kernel/hostname").write_text("oomtop-pod-x7k2\n")
    (proc / "1/ns").mkdir(parents=True)
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("node-7.example\n")
    os.symlink("uts:[1]", proc / "1/ns/uts")  # what readlink gives for a namespace other than ours
    assert node_hostname(str(proc), str(root)) == "node-7.example"
    os.unlink(proc / "1/ns/uts")
    os.symlink(os.readlink("/proc/self/ns/uts"), proc / "1/ns/uts")  # the same namespace: the kernel's name
    assert node_hostname(str(proc), str(root)) == "oomtop-pod-x7k2"
    os.unlink(proc / "1/ns/uts")  # PID 1's namespace cannot be read (no ptrace access): the host's file decides
    assert node_hostname(str(proc), str(root)) == "node-7.example"
    assert node_hostname(str(proc), "/") == "oomtop-pod-x7k2"  # ... when there is a host root
