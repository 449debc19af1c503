"""``oomtop --once --json``'s swap fields on a fixture v2 node with swap (issue 16): what the kernel's files say.

node ``swap_total_bytes`` is SwapTotal; a cgroup's ``swap_bytes`` its memory.swap.current; a task's
``swap_bytes`` its VmSwap; and its ``memcg_score`` is computed against the domain the kernel would size as
``memory.max + min(memory.swap.max, SwapTotal)`` with the task's swap entries in its points.  The real kernel's
figures are checked the same way in the v2 VM (tests/v2/guest/test_swap_v2.py).
"""

from __future__ import annotations

from pathlib import Path

from oomtop.rank import memcg_totalpages
from oomtop.report import to_json
from tests.fakehost import FakeHost, FakeProcess
from tests.test_collector import sample_of
from tests.ui_fixtures import collect

MiB = 1 << 20
CTR = "/kubepods/burstable/podx/c1"


def test_swap_fields_and_the_score_they_make(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, layout="v2", swap_total_kb=512 * 1024)
    host.add_cgroup("/kubepods", usage=80 * MiB)
    host.add_cgroup("/kubepods/burstable", usage=80 * MiB)
    host.add_cgroup("/kubepods/burstable/podx", usage=80 * MiB)
    host.add_cgroup(CTR, usage=60 * MiB, limit=64 * MiB, swap_max=32 * MiB)
    host.set_file(CTR, "memory.swap.current", f"{20 * MiB}\n")
    host.add_process(
        FakeProcess(101, comm="big", rss_anon_kb=30 * 1024, rss_file_kb=0, swap_kb=20 * 1024, pte_kb=0, adj=800), CTR
    )
    host.add_process(FakeProcess(102, comm="small", rss_anon_kb=40 * 1024, rss_file_kb=0, pte_kb=0, adj=800), CTR)
    doc = to_json(sample_of(host))
    assert doc["node"]["swap_total_bytes"] == 512 * MiB
    cgroups = {c["path"]: c for c in doc["cgroups"]}
    assert cgroups[CTR]["swap_bytes"] == 20 * MiB
    assert cgroups[CTR]["swap_limit_bytes"] == 32 * MiB
    assert cgroups[CTR]["oom_domain_bytes"] == (64 + 32) * MiB  # mem_cgroup_get_max(): limit + swap allowance
    assert cgroups["/kubepods"]["swap_limit_bytes"] is None and cgroups["/kubepods"]["oom_domain_bytes"] is None
    tasks = {t["pid"]: t for t in doc["tasks"]}
    assert tasks[101]["swap_bytes"] == 20 * MiB and tasks[102]["swap_bytes"] == 0
    totalpages = (64 + 32) * 256  # 24576: the swap allowance is in the domain
    big = 30 * 256 + 20 * 256 + 800 * (totalpages // 1000)  # swap entries count as much as rss
    small = 40 * 256 + 800 * (totalpages // 1000)
    assert tasks[101]["memcg_score"] == big * 1000 // totalpages
    assert tasks[102]["memcg_score"] == small * 1000 // totalpages
    assert cgroups[CTR]["predicted_victim_pid"] == 101  # 50 MiB with its swap beats 40 MiB of rss alone


def test_without_swap_accounting_a_cgroup_may_use_the_whole_node_swap(tmp_path: Path) -> None:
    """A v2 kernel without swap accounting (swapaccount=0) has no memory.swap.* files: nothing limits a cgroup's
    swap, and mem_cgroup_get_max() adds the node's whole swap to its OOM domain (its swap counter keeps
    PAGE_COUNTER_MAX).  oomtop once read the missing file as "may not swap" and sized such domains too small."""
    host = FakeHost(tmp_path, layout="v2", swap_total_kb=512 * 1024)
    host.add_cgroup("/", usage=2 << 30)
    host.add_cgroup("/box", usage=100 << 20, limit=256 << 20, swap_max=-1)
    host.add_cgroup("/capped", usage=100 << 20, limit=256 << 20, swap_max=64 << 20)
    assert not (host.cgroup_dir("/box") / "memory.swap.max").exists()
    sample = collect(host)
    box = next(c for c in sample.cgroups if c.path == "/box")
    capped = next(c for c in sample.cgroups if c.path == "/capped")
    assert box.swap_limit_bytes is None and capped.swap_limit_bytes == 64 << 20
    page = sample.node.page_size
    assert memcg_totalpages(box, sample.node.swap_total_bytes, page) == ((256 << 20) + (512 << 20)) // page
    assert memcg_totalpages(capped, sample.node.swap_total_bytes, page) == ((256 << 20) + (64 << 20)) // page
