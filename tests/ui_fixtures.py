"""Fixture nodes, events and app factories for the UI tests, snapshots and the UI benchmark.

Samples come from the real Collector reading :mod:`tests.fakehost` trees with a fixed clock (so snapshots
are deterministic), or are built by hand (:func:`synthetic_sample`, for the benchmark's 1,000 processes).
Nothing here reads the live machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from oomtop.collect.collector import Collector
from oomtop.model import (
    Cgroup,
    CgroupKind,
    ContainerRef,
    Identity,
    KernelCandidate,
    KilledTask,
    NodeInfo,
    OomEvent,
    PodRef,
    QosClass,
    Sample,
    Task,
)
from oomtop.source import Notice, SourceMode, StaticSource, Update
from tests.fakehost import FakeHost, FakeProcess

FIXED_TIME = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
MiB = 1 << 20
GiB = 1 << 30
REPO = Path(__file__).resolve().parent.parent
SNAPSHOT_DIR = REPO / "snapshots"

UID_WEB = "8a2f4c1e-5b6d-4e7f-9a0b-1c2d3e4f5a6b"
UID_DB = "1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"
UID_BATCH = "9f8e7d6c-5b4a-4321-8fed-cba987654321"
UID_CACHE = "0a1b2c3d-4e5f-4061-8273-94a5b6c7d8e9"
CID_WEB = "3f" * 32
CID_SIDECAR = "4e" * 32
CID_DB = "5d" * 32
CID_BATCH = "6c" * 32
CID_CACHE = "7b" * 32
SANDBOX = "8a" * 32


def fixed_clock() -> float:
    return FIXED_TIME + 0.4  # the sample on screen is 0.4 s old


# ------------------------------------------------------------------------------------------ fixture hosts


def _names(root: Path, ns: str, pod: str, uid: str, containers: dict[str, str]) -> None:
    """/var/log/pods and /var/log/containers as kubelet writes them, so the collector finds the names."""
    pod_dir = root / "var/log/pods" / f"{ns}_{pod}_{uid}"
    links = root / "var/log/containers"
    links.mkdir(parents=True, exist_ok=True)
    for name, cid in containers.items():
        (pod_dir / name).mkdir(parents=True, exist_ok=True)
        (pod_dir / name / "0.log").write_text("")
        os.symlink(f"/var/log/pods/{ns}_{pod}_{uid}/{name}/0.log", links / f"{pod}_{ns}_{name}-{cid}.log")


def _sandbox_bundle(root: Path, cid: str, pod: str, ns: str, uid: str) -> None:
    """containerd's config.json for a pod's pause container (it has no log, so only this names it)."""
    bundle = root / "run/containerd/io.containerd.runtime.v2.task/k8s.io" / cid
    bundle.mkdir(parents=True, exist_ok=True)
    annotations = {
        "io.kubernetes.cri.container-type": "sandbox",
        "io.kubernetes.cri.sandbox-id": cid,
        "io.kubernetes.cri.sandbox-name": pod,
        "io.kubernetes.cri.sandbox-namespace": ns,
        "io.kubernetes.cri.sandbox-uid": uid,
    }
    (bundle / "config.json").write_text(json.dumps({"ociVersion": "1.0.2", "annotations": annotations}))


def kube_host(root: Path, layout: str = "v1") -> FakeHost:
    """A Kubernetes node (cgroupfs driver) with pods in every QoS class, system slices and a near-OOM pod."""
    host = FakeHost(root, layout=layout)
    v2 = layout == "v2"
    psi = "some avg10={0:.2f} avg60=0.50 avg300=0.10 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    host.add_cgroup("/kubepods", usage=1400 * MiB)
    host.add_cgroup("/kubepods/burstable", usage=900 * MiB)
    host.add_cgroup("/kubepods/besteffort", usage=180 * MiB)
    # Burstable shop/web-0: 2 containers, the app at 92% of its limit
    web = f"/kubepods/burstable/pod{UID_WEB}"
    host.add_cgroup(web, usage=600 * MiB, limit=768 * MiB)
    host.add_cgroup(f"{web}/{SANDBOX}", usage=1 * MiB, file=0, inactive_file=0)
    host.add_cgroup(
        f"{web}/{CID_WEB}",
        usage=471 * MiB,
        limit=512 * MiB,
        high=480 * MiB if v2 else None,
        inactive_file=40 * MiB,
        file=60 * MiB,
        oom_kills=2,
        failcnt=17,
        peak=510 * MiB,
        pressure=psi.format(12.5) if v2 else None,
    )
    host.add_cgroup(f"{web}/{CID_SIDECAR}", usage=90 * MiB, limit=128 * MiB, inactive_file=10 * MiB)
    host.add_process(
        FakeProcess(
            2101, comm="pause", rss_anon_kb=400, rss_file_kb=100, adj=-998, start_ticks=500, cmdline=b"/pause\0"
        ),
        f"{web}/{SANDBOX}",
    )
    host.add_process(
        FakeProcess(
            2201,
            comm="java",
            rss_anon_kb=380 * 1024,
            rss_file_kb=20 * 1024,
            adj=936,
            oom_score=1200,
            start_ticks=600,
            cmdline=b"java\0-Xmx400m\0-jar\0shop.jar\0",
        ),
        f"{web}/{CID_WEB}",
    )
    host.add_process(
        FakeProcess(2202, comm="log-shipper", rss_anon_kb=30 * 1024, adj=936, oom_score=1180, start_ticks=610),
        f"{web}/{CID_WEB}",
    )
    host.add_process(
        FakeProcess(2301, comm="envoy", rss_anon_kb=60 * 1024, adj=936, oom_score=1190, start_ticks=620),
        f"{web}/{CID_SIDECAR}",
    )
    # Burstable data/postgres-0: comfortable
    db = f"/kubepods/burstable/pod{UID_DB}"
    host.add_cgroup(db, usage=300 * MiB, limit=2 * GiB)
    host.add_cgroup(f"{db}/{CID_DB}", usage=290 * MiB, limit=2 * GiB, inactive_file=120 * MiB, file=150 * MiB)
    host.add_process(
        FakeProcess(3101, comm="postgres", rss_anon_kb=140 * 1024, adj=875, oom_score=1100, start_ticks=700),
        f"{db}/{CID_DB}",
    )
    host.add_process(
        FakeProcess(3102, comm="postgres", rss_anon_kb=20 * 1024, adj=875, oom_score=1090, start_ticks=710),
        f"{db}/{CID_DB}",
    )
    # BestEffort jobs/batch-7: no limit at all
    batch = f"/kubepods/besteffort/pod{UID_BATCH}"
    host.add_cgroup(batch, usage=170 * MiB)
    host.add_cgroup(f"{batch}/{CID_BATCH}", usage=165 * MiB)
    host.add_process(
        FakeProcess(
            4101,
            comm="python3",
            rss_anon_kb=150 * 1024,
            adj=1000,
            oom_score=1950,
            start_ticks=800,
            cmdline=b"python3\0batch.py\0",
        ),
        f"{batch}/{CID_BATCH}",
    )
    # Guaranteed kube-system/cache-0: directly under kubepods
    cache = f"/kubepods/pod{UID_CACHE}"
    host.add_cgroup(cache, usage=200 * MiB, limit=256 * MiB)
    host.add_cgroup(f"{cache}/{CID_CACHE}", usage=198 * MiB, limit=256 * MiB, inactive_file=2 * MiB)
    host.add_process(
        FakeProcess(5101, comm="redis-server", rss_anon_kb=190 * 1024, adj=-997, oom_score=10, start_ticks=900),
        f"{cache}/{CID_CACHE}",
    )
    # the node's own cgroups
    host.add_cgroup("/system.slice", usage=400 * MiB)
    host.add_cgroup("/system.slice/kubelet.service", usage=150 * MiB)
    host.add_cgroup("/system.slice/containerd.service", usage=120 * MiB)
    host.add_process(
        FakeProcess(801, comm="kubelet", rss_anon_kb=110 * 1024, adj=-999, start_ticks=200),
        "/system.slice/kubelet.service",
    )
    host.add_process(
        FakeProcess(802, comm="containerd", rss_anon_kb=80 * 1024, adj=-999, start_ticks=210),
        "/system.slice/containerd.service",
    )
    host.add_cgroup("/user.slice", usage=50 * MiB)
    host.add_process(FakeProcess(1, comm="systemd", rss_anon_kb=8 * 1024, start_ticks=1), "/")
    _names(root, "shop", "web-0", UID_WEB, {"app": CID_WEB, "envoy": CID_SIDECAR})
    _sandbox_bundle(root, SANDBOX, "web-0", "shop", UID_WEB)
    _names(root, "data", "postgres-0", UID_DB, {"postgres": CID_DB})
    _names(root, "jobs", "batch-7", UID_BATCH, {"worker": CID_BATCH})
    _names(root, "kube-system", "cache-0", UID_CACHE, {"redis": CID_CACHE})
    return host


def plain_host(root: Path) -> FakeHost:
    """A host without Kubernetes: systemd slices, one with a limit, and a Docker container."""
    host = FakeHost(root, layout="v2", mem_total_kb=8 * 1024 * 1024, mem_available_kb=3 * 1024 * 1024)
    host.add_cgroup("/system.slice", usage=900 * MiB)
    host.add_cgroup("/system.slice/nginx.service", usage=200 * MiB, limit=256 * MiB, high=240 * MiB)
    host.add_cgroup("/system.slice/postgresql.service", usage=600 * MiB)
    docker = "/system.slice/docker-" + "9c" * 32 + ".scope"
    host.add_cgroup(docker, usage=90 * MiB, limit=1 * GiB)
    host.add_cgroup("/user.slice", usage=700 * MiB)
    host.add_cgroup("/user.slice/user-1000.slice", usage=690 * MiB)
    host.add_process(FakeProcess(1, comm="systemd", rss_anon_kb=9 * 1024, start_ticks=1), "/")
    nginx = "/system.slice/nginx.service"
    host.add_process(FakeProcess(610, comm="nginx", rss_anon_kb=12 * 1024, start_ticks=300), nginx)
    host.add_process(FakeProcess(611, comm="nginx", rss_anon_kb=180 * 1024, start_ticks=301), nginx)
    host.add_process(
        FakeProcess(700, comm="postgres", rss_anon_kb=500 * 1024, adj=-900, start_ticks=310),
        "/system.slice/postgresql.service",
    )
    host.add_process(FakeProcess(900, comm="node", rss_anon_kb=80 * 1024, start_ticks=400), docker)
    host.add_process(
        FakeProcess(1500, comm="firefox", rss_anon_kb=600 * 1024, adj=100, oom_score=800, start_ticks=1000),
        "/user.slice/user-1000.slice",
    )
    return host


HOSTILE_COMMS = ("[red]evil[/red]", "[link=https://x.example]x[/link]", "\x1b[2Jwipe", "bad\udcff\udcfeutf8")


def hostile_host(root: Path) -> FakeHost:
    """Processes and a pod whose names hold markup, a screen-clearing escape and (decoded) invalid UTF-8."""
    host = FakeHost(root, layout="v2")
    host.add_cgroup("/kubepods", usage=300 * MiB)
    host.add_cgroup("/kubepods/besteffort", usage=300 * MiB)
    pod = f"/kubepods/besteffort/pod{UID_BATCH}"
    host.add_cgroup(pod, usage=300 * MiB, limit=400 * MiB)
    host.add_cgroup(f"{pod}/{CID_BATCH}", usage=290 * MiB, limit=400 * MiB)
    for i, comm in enumerate(HOSTILE_COMMS):
        cmdline = comm.encode("utf-8", "surrogateescape") + b"\0--x\0"
        host.add_process(
            FakeProcess(
                6100 + i, comm=comm, rss_anon_kb=(40 + 10 * i) * 1024, adj=1000, start_ticks=1000 + i, cmdline=cmdline
            ),
            f"{pod}/{CID_BATCH}",
        )
    _names(root, "[bold]ns", "[red]pod\x1b]8;;x\x07", UID_BATCH, {"c[b]": CID_BATCH})
    return host


def collect(host: FakeHost, at: float = FIXED_TIME, **config: Any) -> Sample:
    """One Sample of the fixture host, stamped with a fixed time."""
    with Collector(host.config(**config), wall_clock=lambda: at, monotonic=lambda: at - FIXED_TIME + 1000.0) as c:
        return c.sample()


# ------------------------------------------------------------------------------------------------- events


def kill_event(sample: Sample, *, predicted: int | None = 2201, victim_pid: int = 2201,
               at: float = FIXED_TIME - 65.0, historical: bool = False) -> OomEvent:  # fmt: skip
    """A memcg OOM in shop/web-0's app container, with the task table the kernel printed."""
    container = next(c for c in sample.cgroups if c.path.endswith(CID_WEB))
    rows = (
        KernelCandidate(pid=2201, comm="java", oom_score_adj=936, rss_pages=100_000, tgid=2201, pgtables_bytes=983040,
                        swapents=0),
        KernelCandidate(pid=2202, comm="log-shipper", oom_score_adj=936, rss_pages=7_680, tgid=2202,
                        pgtables_bytes=131072, swapents=0),
    )  # fmt: skip
    victim = next(r for r in rows if r.pid == victim_pid)
    killed = KilledTask(
        pid=victim.pid,
        comm=victim.comm,
        anon_rss_bytes=victim.rss_pages * 4096,
        file_rss_bytes=0,
        shmem_rss_bytes=0,
        oom_score_adj=victim.oom_score_adj,
    )
    return OomEvent(
        kind="memcg",
        time=at,
        kernel_time_s=12345.6,
        oom_cgroup=container.path,
        task_cgroup=container.path,
        victim=killed,
        killed=(killed,),
        candidates=rows,
        usage_bytes=512 * MiB,
        limit_bytes=512 * MiB,
        source=("kmsg",),
        historical=historical,
        pod=container.identity.pod,
        container=container.identity.container,
        predicted_victim_pid=predicted,
        invoker_comm="java",
    )


def global_event(at: float = FIXED_TIME - 30.0, predicted: int | None = 4101) -> OomEvent:
    """A node-wide OOM that killed jobs/batch-7's python3, as the watcher reports it: with the node-wide victim
    the last Sample before it predicted."""
    victim = KilledTask(
        pid=4101, comm="python3", anon_rss_bytes=150 * MiB, file_rss_bytes=0, shmem_rss_bytes=0, oom_score_adj=1000
    )
    return OomEvent(
        kind="global",
        predicted_victim_pid=predicted,
        time=at,
        kernel_time_s=12380.1,
        oom_cgroup="/",
        task_cgroup=None,
        victim=victim,
        killed=(victim,),
        source=("kmsg",),
        node_ram_pages=4 * 1024 * 1024,
    )


# ------------------------------------------------------------------------------------- hand-built samples


def _node(tick: int = 0) -> NodeInfo:
    return NodeInfo(
        hostname="bench-node",
        kernel_release="6.1.0-bench",
        cgroup_version=1,
        cgroup_layout="v1",
        mem_total_bytes=64 * GiB,
        mem_available_bytes=(40 - tick % 5) * GiB,
        swap_total_bytes=0,
        swap_free_bytes=0,
        page_size=4096,
        clock_ticks=100,
        boot_time=FIXED_TIME - 86400,
    )


def _cgroup(path: str, usage: int, limit: int | None, identity: Identity, pids: tuple[int, ...] = ()) -> Cgroup:
    return Cgroup(
        path=path,
        usage_bytes=usage,
        limit_bytes=limit,
        high_bytes=None,
        peak_bytes=usage,
        failcnt=0,
        anon_bytes=usage * 3 // 4,
        file_bytes=usage // 4,
        inactive_file_bytes=usage // 8,
        shmem_bytes=0,
        swap_bytes=0,
        swap_limit_bytes=None,
        oom_events=0,
        oom_kills=0,
        oom_kills_local=None,
        oom_group=None,
        under_oom=False,
        pressure=None,
        pids=pids,
        identity=identity,
    )


def synthetic_sample(tick: int = 0, pods: int = 50, containers: int = 4, procs: int = 1000, seed: int = 7) -> Sample:
    """A Kubernetes-shaped node: ``pods`` pods x ``containers`` containers (+ kubepods, QoS and root: about
    ``pods * (containers + 1)`` cgroups) holding ``procs`` processes.  Usage moves with ``tick`` so the ranking
    changes from one Sample to the next."""
    rng = random.Random(seed)
    wobble = random.Random(seed * 1000 + tick)
    qos_names = {QosClass.BURSTABLE: "burstable", QosClass.BEST_EFFORT: "besteffort"}
    cgroups: list[Cgroup] = [
        _cgroup("/", 20 * GiB, None, Identity(CgroupKind.ROOT, label="/")),
        _cgroup("/kubepods", 18 * GiB, None, Identity(CgroupKind.KUBEPODS, label="kubepods")),
    ]
    for qos, name in qos_names.items():
        cgroups.append(_cgroup(f"/kubepods/{name}", 6 * GiB, None, Identity(CgroupKind.QOS, qos=qos, label=name)))
    tasks: list[Task] = []
    leaves: list[tuple[str, int]] = []
    pod_rows: list[tuple[int, Cgroup]] = []
    for p in range(pods):
        qos = (QosClass.BURSTABLE, QosClass.BEST_EFFORT, QosClass.GUARANTEED)[p % 3]
        uid = f"{p:08x}-0000-4000-8000-{p:012x}"
        parent = "/kubepods" if qos is QosClass.GUARANTEED else f"/kubepods/{qos_names[qos]}"
        pod_ref = PodRef(uid, qos, f"pod-{p}", f"ns-{p % 7}")
        pod_path = f"{parent}/pod{uid}"
        limit = None if qos is QosClass.BEST_EFFORT else (256 + 64 * (p % 9)) * MiB
        pod_index = len(cgroups)
        cgroups.append(
            _cgroup(pod_path, 0, limit, Identity(CgroupKind.POD, qos=qos, pod=pod_ref, label=f"ns-{p % 7}/pod-{p}"))
        )
        pod_usage = 0
        for c in range(containers):
            cid = f"{p:04x}{c:04x}" * 8
            climit = None if limit is None else limit // containers
            base = (climit or 128 * MiB) * rng.uniform(0.3, 0.8)
            usage = int(base * wobble.uniform(0.85, 1.2))
            pod_usage += usage
            ident = Identity(CgroupKind.CONTAINER, qos=qos, pod=pod_ref, container=ContainerRef(cid, "containerd",
                             f"ctr-{c}"), label=f"ctr-{c}")  # fmt: skip
            leaves.append((f"{pod_path}/{cid}", len(cgroups)))
            cgroups.append(_cgroup(f"{pod_path}/{cid}", usage, climit, ident))
        pod_rows.append((pod_index, cgroups[pod_index]))
        cgroups[pod_index] = replace(cgroups[pod_index], usage_bytes=pod_usage)
    members: dict[int, list[int]] = {}
    for i in range(procs):
        path, index = leaves[i % len(leaves)]
        pid = 10_000 + i
        members.setdefault(index, []).append(pid)
        rss = int(rng.uniform(2, 60) * MiB * wobble.uniform(0.9, 1.1))
        tasks.append(
            Task(
                pid=pid,
                start_ticks=5000 + i,
                comm=f"worker-{i % 37}",
                cmdline=f"worker --id {i}",
                uid=0,
                cgroup=path,
                rss_anon_bytes=rss,
                rss_file_bytes=rss // 8,
                rss_shmem_bytes=0,
                swap_bytes=0,
                pgtables_bytes=64 * 1024,
                oom_score=600 + i % 300,
                oom_score_adj=(-997, 500, 1000)[i % 3],
            )
        )
    for index, pids in members.items():
        cgroups[index] = replace(cgroups[index], pids=tuple(pids))
    return Sample(
        time=FIXED_TIME + tick * 0.1,
        monotonic=1000.0 + tick * 0.1,
        node=_node(tick),
        cgroups=tuple(cgroups),
        tasks=tuple(tasks),
        seq=tick + 1,
    )


# ---------------------------------------------------------------------------------------------- the app


class FeedSource(StaticSource):
    """A StaticSource the test can push more updates into after the app started."""

    def __init__(
        self, updates: Iterable[Update] = (), mode: SourceMode = "fixture", interval_s: float | None = 0.5
    ) -> None:
        super().__init__(updates, hold=False)
        self.mode = mode
        self.interval_s = interval_s
        self._queue: asyncio.Queue[Update] = asyncio.Queue()

    def push(self, update: Update) -> None:
        self._queue.put_nowait(update)

    async def updates(self):  # type: ignore[override]
        async for update in super().updates():
            yield update
        while not self._closed.is_set():
            getter = asyncio.ensure_future(self._queue.get())
            closer = asyncio.ensure_future(self._closed.wait())
            done, _ = await asyncio.wait({getter, closer}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                closer.cancel()
                yield getter.result()
            else:
                getter.cancel()
                return


def make_app(updates: Iterable[Update], theme: str | None = None, **kwargs: Any):  # type: ignore[no-untyped-def]
    from oomtop.ui.app import OomtopApp

    source = FeedSource(list(updates), mode=kwargs.pop("mode", "fixture"))
    return OomtopApp(source, clock=fixed_clock, theme=theme, cursor_blink=False, **kwargs)


WAIT_S = 10.0  # generous for a loaded CI machine; a wait that runs out fails the test, saying what it waited for


async def wait_for(
    predicate: Callable[[], bool], pilot: Any, what: str | Callable[[], str], timeout_s: float = WAIT_S
) -> None:
    """Wait until ``predicate()`` holds, then for the app to go idle; raise AssertionError naming ``what`` (a
    text, or a function that tells what was seen instead) when it never does: a silent timeout would let the
    next step fail for a reason that points elsewhere."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {said}")
        await asyncio.sleep(0.005)
    await pilot.pause()


async def settle(pilot: Any, count: int | None = None) -> None:
    """Wait until the app applied every update its source had (or ``count`` of them), then for a repaint."""
    app = pilot.app
    expected = count if count is not None else len(app.source._updates)
    await wait_for(lambda: app.updates_seen >= expected, pilot,
                   lambda: f"the app to apply {expected} updates (it applied {app.updates_seen})")  # fmt: skip
    await pilot.pause()


def notice_no_root() -> Notice:
    return Notice(
        "cannot read the kernel log /dev/kmsg (permission denied): OOM kills are detected from cgroup "
        "counters only; run as root (or with CAP_SYSLOG) for victim details",
        "no-root",
    )


def growing(sample: Sample, steps: int = 30, step_s: float = 10.0, rate: int = MiB // 2) -> list[Sample]:
    """``steps`` earlier Samples leading up to ``sample``, ``step_s`` apart, in which shop/web-0's app container
    (and its java process) grew by ``rate`` bytes a second: history for the sparkline, growth and time to limit."""
    app_path = next(c.path for c in sample.cgroups if c.path.endswith(CID_WEB))
    series = []
    for step in range(steps, -1, -1):
        less = int(step * step_s * rate)
        cgroups = tuple(
            replace(c, usage_bytes=c.usage_bytes - less, anon_bytes=max(0, c.anon_bytes - less))
            if app_path == c.path or app_path.startswith(c.path.rstrip("/") + "/")
            else c
            for c in sample.cgroups
        )
        tasks = tuple(replace(t, rss_anon_bytes=t.rss_anon_bytes - less) if t.pid == 2201 else t for t in sample.tasks)
        series.append(
            replace(
                sample,
                cgroups=cgroups,
                tasks=tasks,
                time=sample.time - step * step_s,
                monotonic=sample.monotonic - step * step_s,
                seq=steps - step + 1,
            )
        )
    return series
