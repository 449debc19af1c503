"""Tests for oomtop.explain: the logged task table re-ranked with the kernel's arithmetic, and the views."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from oomtop.collect.identity import NodeNames
from oomtop.collect.kmsg import parse_log
from oomtop.explain import (
    EXIT_RACE_WINDOW_S,
    Explainer,
    RankedCandidate,
    domain_pages,
    event_to_json,
    exit_race_gap_s,
    explain,
    previous_in_domain,
    rank_candidates,
    render_text,
    with_identity,
)
from oomtop.model import KernelCandidate, KilledTask, OomEvent, QosClass
from tests import kernlog
from tests.kernlog import CRIO_PATH, GUARANTEED_PATH, POD_UID, STRESS, SYSTEMD_PATH, Task, memcg_block, render

SAMPLES = Path("/work/shared/samples")


def sample_event(name: str) -> OomEvent:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"sample {path} not present")
    (event,) = parse_log(path.read_bytes())
    return event


def built(tasks: list[Task], **kw: object) -> OomEvent:
    (event,) = parse_log(render(memcg_block(tasks, **kw)))  # type: ignore[arg-type]
    return event


def row(pid: int, rss: int, adj: int = 0, pgtables_bytes: int = 0, swapents: int = 0, **kw: int) -> KernelCandidate:
    return KernelCandidate(
        pid=pid,
        comm=f"t{pid}",
        oom_score_adj=adj,
        rss_pages=rss,
        pgtables_bytes=pgtables_bytes,
        swapents=swapents,
        **kw,
    )  # type: ignore[arg-type]


def event_with(candidates: list[KernelCandidate], victim: int, **kw: object) -> OomEvent:
    task = KilledTask(victim, f"t{victim}")
    fields = {
        "kind": "memcg",
        "time": None,
        "kernel_time_s": 12.5,
        "oom_cgroup": "/a",
        "task_cgroup": "/a",
        "victim": task,
        "killed": (task,),
        "candidates": tuple(candidates),
        "limit_bytes": 100 << 20,
        **kw,
    }
    return OomEvent(**fields)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------- samples


def test_6_18_sample_victim_is_top_with_the_kernel_numbers() -> None:
    event = sample_event("dmesg-6.18-memcg-v1.txt")
    ranking = rank_candidates(event)
    assert [(c.pid, c.points, c.score) for c in ranking] == [(7978, 12744, 995), (7973, 470, 36)]
    exp = explain(event)
    assert exp.victim_is_top is True and exp.totalpages == 12800 and exp.victim_rank == 1
    assert exp.why == (
        "pid 7978 stress had the most points: 12707 rss + 0 swap + 37 page-table pages + 0 × 12 adj "
        "= 12744 of 12800 pages (score 995)"
    )


@pytest.mark.parametrize("name", ["kmsg-6.1-v2-oomgroup.raw", "dmesg-6.1-v2-oomgroup.txt"])
def test_6_1_group_sample_victim_is_top(name: str) -> None:
    event = sample_event(name)
    exp = explain(event)
    assert exp.totalpages == 16384  # 64 MiB, swap unlimited but the node's swap is not in a memcg log
    assert [(c.pid, c.points, c.score) for c in exp.ranking] == [
        (215, 10979 + 33 + 968 * 16, 1617),
        (216, 8455 + 30 + 968 * 16, 1463),
    ]
    assert exp.victim_is_top is True
    assert "968 × 16 adj" in exp.why
    assert exp.notes == (
        f"memory.oom.group is set on {event.oom_group_path}: the kernel killed all 2 of its tasks "
        "(oom_score_adj -1000 spared) with the victim",
    )


# -------------------------------------------------------------------------------------------- arithmetic


def test_hand_computed_ranking_with_adj() -> None:
    # 100 MiB limit, no swap: 25600 pages; adj weighs 25 pages a point.
    event = event_with(
        [row(11, 10000, pgtables_bytes=8192), row(12, 2000, adj=500, pgtables_bytes=8192, swapents=7)],
        12,
        swap_limit_bytes=0,
    )
    assert domain_pages(event) == 25600
    first, second = rank_candidates(event)
    assert (first.pid, first.points, first.score) == (12, 2000 + 7 + 2 + 500 * 25, 14509 * 1000 // 25600)
    assert (second.pid, second.points, second.score) == (11, 10002, 390)
    exp = explain(event)
    assert exp.victim_is_top is True
    assert "2000 rss + 7 swap + 2 page-table pages + 500 × 25 adj = 14509 of 25600 pages (score 566)" in exp.why


def test_negative_points_truncate_like_c() -> None:
    event = event_with([row(11, 20000, adj=-998)], 11)
    (c,) = rank_candidates(event)
    assert c.points == 20000 - 998 * 25 == -4950
    assert c.score == -193  # -4950000 / 25600 = -193.36: C truncates toward zero (Python's // would give -194)
    assert "- 998 × 25 adj" in explain(event).why


def test_swap_allowance_and_node_swap() -> None:
    limit = 100 << 20
    assert domain_pages(event_with([], 1, swap_limit_bytes=8 << 20)) == 25600 + 2048  # node swap unknown
    assert domain_pages(event_with([], 1, swap_limit_bytes=8 << 20, node_swap_bytes=4 << 20)) == 25600 + 1024
    assert domain_pages(event_with([], 1, swap_limit_bytes=None, node_swap_bytes=4 << 20)) == 25600 + 1024
    assert domain_pages(event_with([], 1, swap_limit_bytes=None)) == limit // 4096  # only the limit is known
    assert domain_pages(event_with([], 1, limit_bytes=None)) is None
    assert (
        domain_pages(event_with([], 1, kind="global", oom_cgroup="/", node_ram_pages=524158, node_swap_bytes=1 << 30))
        == 524158 + 262144
    )
    v1 = built(list(STRESS), swap_limit_kb=51200)  # memsw limit 100 MiB: 50 MiB of swap allowed
    assert domain_pages(v1) == 12800 + 12800


def test_global_ranking_from_a_built_log() -> None:
    tasks = [Task(1, "systemd", anon=2000), Task(500, "java", anon=400000), Task(501, "sshd", anon=900, adj=-1000)]
    (event,) = parse_log(render(kernlog.global_block(tasks, swap_kb=1048576)))
    exp = explain(event)
    assert exp.totalpages == 524158 + 262144
    assert [c.pid for c in exp.ranking] == [500, 1, 501]
    assert [c.eligible for c in exp.ranking] == [True, False, False]  # init and adj -1000 are never picked
    assert exp.victim_is_top is True


def test_ties_put_the_later_row_first() -> None:
    event = event_with([row(11, 5000), row(12, 5000), row(13, 100)], 12)
    assert [c.pid for c in rank_candidates(event)] == [12, 11, 13]
    exp = explain(event)
    assert exp.victim_is_top is True and "tied with pid 11" in exp.why
    earlier = explain(replace(event, victim=KilledTask(11, "t11"), killed=(KilledTask(11, "t11"),)))
    assert earlier.victim_is_top is False and "later in the table" in earlier.why


def test_sums_rss_parts_when_rss_is_missing() -> None:
    event = event_with([row(11, 0, rss_anon_pages=100, rss_file_pages=20, rss_shmem_pages=3)], 11)
    assert rank_candidates(event)[0].rss_pages == 123


def test_victim_not_top_is_reported() -> None:
    tasks = [Task(10, "big", anon=20000), Task(11, "small", anon=5000)]
    event = built(tasks, victim=tasks[1], limit_kb=102400)
    exp = explain(event)
    assert exp.victim_is_top is False and exp.top is not None and exp.top.pid == 10 and exp.victim_rank == 2
    assert exp.why.startswith("pid 11 small was not the top candidate: pid 10 big had 20002 points against 5002")
    assert "task table" in exp.why
    assert event_to_json(event)["victim_is_top"] is False


def test_victim_not_top_in_a_group_kill() -> None:
    event = event_with(
        [row(11, 9000), row(12, 100)], 12, oom_group_path="/a", killed=(KilledTask(12, "t12"), KilledTask(11, "t11"))
    )
    exp = explain(event)
    assert exp.victim_is_top is False and "memory.oom.group" in exp.why


def test_older_kernel_reason_and_logged_score() -> None:
    tasks = [Task(10, "big", anon=20000), Task(11, "child", anon=5000)]
    event = built(tasks, victim=tasks[1], flavour="4.x", limit_kb=102400)
    exp = explain(event)
    assert exp.victim_is_top is False and "older than 5.1" in exp.why
    assert explain(replace(event, logged_score=1)).notes == ("the kernel logged score 1; the table gives 195",)


def test_no_table_or_victim_missing() -> None:
    event = event_with([], 5)
    exp = explain(event)
    assert exp.victim_is_top is None and exp.ranking == () and "no task table" in exp.why
    missing = explain(event_with([row(11, 100)], 5))
    assert missing.victim_is_top is False and missing.victim_rank is None and "not in the table" in missing.why
    unknown = explain(event_with([row(11, 100, adj=500)], 11, limit_bytes=None))
    assert unknown.ranking[0].score is None and unknown.ranking[0].points == 100 and unknown.notes


# --------------------------------------------------------------------------------------------- identity


def test_with_identity_paths() -> None:
    cgroupfs = with_identity(sample_event("dmesg-6.18-memcg-v1.txt"))
    assert cgroupfs.pod is not None and cgroupfs.pod.qos is QosClass.BURSTABLE
    assert cgroupfs.container is not None and cgroupfs.container.id == "runcctr1"
    systemd = with_identity(built(list(STRESS), oom_cgroup=SYSTEMD_PATH))
    assert systemd.pod is not None and systemd.pod.uid == POD_UID and systemd.container is not None
    assert systemd.container.runtime == "containerd"
    crio = with_identity(built(list(STRESS), oom_cgroup=CRIO_PATH))
    assert crio.pod is not None and crio.pod.qos is QosClass.BEST_EFFORT
    assert crio.container is not None and crio.container.runtime == "cri-o"
    guaranteed = with_identity(built(list(STRESS), oom_cgroup=GUARANTEED_PATH))
    assert guaranteed.pod is not None and guaranteed.pod.qos is QosClass.GUARANTEED
    plain = with_identity(built(list(STRESS), oom_cgroup="/system.slice/foo.service"))
    assert plain.pod is None and plain.container is None
    nothing = event_with([], 1, oom_cgroup=None, task_cgroup=None)
    assert with_identity(nothing) is nothing


def test_with_identity_names(tmp_path: Path) -> None:
    (tmp_path / "var/log/pods" / f"shop_web-7d9_{POD_UID}" / "app").mkdir(parents=True)
    names = NodeNames.load(str(tmp_path))
    event = with_identity(built(list(STRESS), oom_cgroup=GUARANTEED_PATH), names)
    assert event.pod is not None and (event.pod.namespace, event.pod.name) == ("shop", "web-7d9")
    text = render_text([event])
    assert "pod        shop/web-7d9 (Guaranteed)" in text


# ------------------------------------------------------------------------------------------------- views

CONTRACT = {
    "time",
    "time_epoch",
    "kernel_time_s",
    "kind",
    "oom_cgroup",
    "task_cgroup",
    "victim",
    "killed",
    "pod",
    "container",
    "candidates",
    "usage_bytes",
    "limit_bytes",
    "victim_is_top",
    "source",
    "historical",
    "predicted_victim_pid",
    "count",
}
TASK_KEYS = {"pid", "comm", "anon_rss_bytes", "file_rss_bytes", "shmem_rss_bytes", "oom_score_adj"}


def test_event_to_json_contract() -> None:
    event = with_identity(sample_event("kmsg-6.1-v2-oomgroup.raw"))
    doc = json.loads(json.dumps(event_to_json(event)))
    assert doc.keys() >= CONTRACT
    assert doc["victim"].keys() >= TASK_KEYS and all(k.keys() >= TASK_KEYS for k in doc["killed"])
    assert doc["time"] is None and doc["kernel_time_s"] == pytest.approx(32.472738) and doc["kind"] == "memcg"
    assert [k["pid"] for k in doc["killed"]] == [215, 216] and doc["victim"]["pid"] == 215
    assert doc["victim"]["anon_rss_bytes"] == 37524 * 1024 and doc["victim"]["oom_score_adj"] == 968
    assert doc["pod"] == {
        "uid": "5f0c2a43-8f4e-4d59-9a7e-1b2c3d4e5f60",
        "name": None,
        "namespace": None,
        "qos": "Burstable",
    }
    assert doc["container"]["id"] == "2a4a743741f705fb70f97b340b5f356dee114a1b32b92b018dc30a478c151181"
    assert [(c["pid"], c["score"]) for c in doc["candidates"]] == [(215, 1617), (216, 1463)]
    assert set(doc["candidates"][0]) >= {"pid", "comm", "score", "points", "oom_score_adj"}
    assert doc["usage_bytes"] == doc["limit_bytes"] == 65536 * 1024
    assert doc["victim_is_top"] is True and doc["source"] == ["log"] and doc["historical"] is False
    assert doc["predicted_victim_pid"] is None and doc["count"] == 1 and doc["seq"] == 368


def test_event_to_json_wall_time_and_empty_table() -> None:
    (event,) = parse_log(render(memcg_block(list(STRESS)), "dmesg-T"))
    doc = event_to_json(event)
    assert doc["time_epoch"] == pytest.approx(kernlog.WALL0, abs=1)
    assert doc["time"].startswith("2019-04-27T20:56:09") and doc["time"].endswith("+00:00")
    bare = event_to_json(event_with([], 1))
    assert bare["candidates"] == [] and bare["victim_is_top"] is None and bare["pod"] is None


def test_render_text_sample() -> None:
    event = with_identity(sample_event("dmesg-6.18-memcg-v1.txt"))
    text = render_text([event], [explain(event)])
    assert "[  441.53] since boot" in text
    assert "memory cgroup limit" in text and "usage 50.0M / limit 50.0M" in text
    assert "pod        pod bc001ffa-68fc-11e9-92d7-5ef9efd9374c (Burstable)" in text
    assert "killed     pid 7978 stress" in text
    assert "had the most points" in text
    assert text.rstrip().endswith("1 OOM kill found")
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if "points" in line and "pid" in line and "comm" in line)
    assert lines[head + 1].split()[:4] == ["*", "7978", "stress", "12744"]
    assert lines[head + 1].index("12744") + 5 == lines[head + 2].index("470") + 3  # right-aligned numbers


def test_render_text_group_many_and_summary() -> None:
    tasks = [Task(100 + i, f"w{i}", anon=1000 + i, adj=968) for i in range(15)]
    (event,) = parse_log(render(kernlog.group_block(tasks)))
    (other,) = parse_log(render(memcg_block(list(STRESS)), "dmesg-T"))
    text = render_text([event, other])
    assert "... 5 more" in text and "15 tasks killed" in text
    assert text.rstrip().endswith("2 OOM kills found")
    assert "2019-04-27" in text  # wall time when the log has it
    assert render_text([]) == "no OOM kills found in the input\n"


def test_render_text_escapes_untrusted_text() -> None:
    evil = "\x1b[2Jx\u202e"
    event = event_with([row(11, 100)], 11, oom_cgroup="/a\x1b]0;t\x07", task_cgroup="/b\nc")
    event = replace(
        event,
        victim=KilledTask(11, evil),
        killed=(KilledTask(11, evil),),
        candidates=(replace(event.candidates[0], comm=evil),),
    )
    text = render_text([event])
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b[2Jx\\u202e" in text and "/b\\nc" in text
    assert json.loads(json.dumps(event_to_json(event)))["victim"]["comm"] == evil  # JSON keeps it as-is


def test_ranked_candidate_fields() -> None:
    (c,) = rank_candidates(event_with([row(3, 10, pgtables_bytes=4096 * 3, swapents=2, adj=-1000)], 3))
    assert c == RankedCandidate(
        pid=3,
        comm="t3",
        points=10 + 2 + 3 - 1000 * 25,
        score=c.score,
        oom_score_adj=-1000,
        rss_pages=10,
        swapents=2,
        pgtables_bytes=12288,
        eligible=False,
    )


# ------------------------------------------------------------------------------------- the exit race

EXIT_RACE_LOG = Path(__file__).parent / "data" / "exit_race_6.18.dmesg"  # captured on 6.18 by test_pod_oom


def test_exit_race_second_kill_is_explained_from_a_real_log() -> None:
    """Two kills 10 ms apart in one pod: the second task table no longer lists the first victim."""
    first, second = parse_log(EXIT_RACE_LOG.read_bytes())
    assert (first.victim.pid, second.victim.pid) == (10196, 10205) and first.oom_cgroup == second.oom_cgroup
    explainer = Explainer()
    one, two = explainer.explain(first), explainer.explain(second)
    assert not any("MMF_OOM_SKIP" in note for note in one.notes)
    (race,) = [note for note in two.notes if "MMF_OOM_SKIP" in note]
    assert race.startswith("10 ms after this domain's kill of pid 10196 oomev pod-a")
    assert exit_race_gap_s(second, first) == pytest.approx(0.010148, abs=1e-6)  # the two reports' first lines
    text = render_text([first, second], [one, two])
    assert text.count("MMF_OOM_SKIP") == 1 and "note       10 ms after" in text
    assert event_to_json(second, two)["notes"] == [race]


def test_exit_race_needs_the_same_domain_a_short_gap_and_the_victim_gone() -> None:
    first = event_with([row(1, 500), row(2, 300)], victim=1, kernel_time_s=100.0)
    after = event_with([row(2, 300)], victim=2, kernel_time_s=100.01)
    assert exit_race_gap_s(after, first) == pytest.approx(0.01)
    assert exit_race_gap_s(after, None) is None
    assert exit_race_gap_s(replace(after, oom_cgroup="/b"), first) is None  # another domain
    assert exit_race_gap_s(replace(after, kernel_time_s=100.0 + EXIT_RACE_WINDOW_S + 0.1), first) is None
    assert exit_race_gap_s(replace(after, kernel_time_s=99.0), first) is None  # before it
    still_listed = event_with([row(1, 500), row(2, 300)], victim=2, kernel_time_s=100.01)
    assert exit_race_gap_s(still_listed, first) is None  # the first victim still held its memory: a new choice
    assert exit_race_gap_s(replace(after, candidates=()), first) is None  # no table: cannot tell
    assert (
        exit_race_gap_s(replace(after, kind="global", oom_cgroup="/"), replace(first, kind="global", oom_cgroup="/"))
        is None
    )
    assert explain(after).notes == () and any("MMF_OOM_SKIP" in n for n in explain(after, previous=first).notes)


def test_explainer_remembers_the_last_kill_per_domain() -> None:
    a1 = event_with([row(1, 500), row(2, 300)], victim=1, kernel_time_s=100.0)
    b1 = event_with([row(7, 500)], victim=7, kernel_time_s=100.005, oom_cgroup="/b")
    a2 = event_with([row(2, 300)], victim=2, kernel_time_s=100.01)
    explainer = Explainer()
    notes = [explainer.explain(e).notes for e in (a1, b1, a2)]
    assert notes[0] == () and notes[1] == () and len(notes[2]) == 1
    assert explainer.previous(a2) is a2 and previous_in_domain([b1, a1], a2) is a1
    assert previous_in_domain([b1], a2) is None and previous_in_domain([a1], replace(a2, oom_cgroup=None)) is None


def test_events_lines_mark_the_exit_race(capsys: pytest.CaptureFixture[str]) -> None:
    """``oomtop events``: the text line of the second kill says so; the JSON line carries the note."""
    from oomtop.events_cli import _emit

    first, second = parse_log(EXIT_RACE_LOG.read_bytes())
    text, as_json = Explainer(), Explainer()
    for event in (first, second):
        _emit(event, False, text)
        _emit(event, True, as_json)
    lines = capsys.readouterr().out.splitlines()
    assert "exit race" not in lines[0] and "killed 10205" in lines[2]
    assert lines[2].endswith("(exit race: 10 ms after the kill of 10196 in this domain)")
    assert json.loads(lines[1])["notes"] == [] and "MMF_OOM_SKIP" in json.loads(lines[3])["notes"][0]
