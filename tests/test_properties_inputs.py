"""Property tests for what oomtop reads from the node (issue 15, untrusted input): cgroup paths and the runtimes'
config.json (never a crash, never a pod given another pod's name), cgroup and proc files (never a crash, never a
garbage figure taken for a real one), and theme files (one clear line, never a traceback).

oomtop runs as root and reads what containers, runtimes and users write; a fake host under a temporary
directory (tests/fakehost.py) stands in for the node.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oomtop.collect.cgroupfs import (
    MAX_COUNTER,
    V1_STAT_KEYS,
    V2_STAT_KEYS,
    CgroupGone,
    CgroupReader,
    MemoryHierarchy,
    PidFilter,
    parse_flat_keyed,
    parse_int,
    parse_pids,
    parse_pressure,
    parse_stat_keys,
    parse_v1_limit,
    parse_v2_limit,
)
from oomtop.collect.identity import NodeNames, identify
from oomtop.collect.node import NodeReader, parse_meminfo
from oomtop.collect.procfs import (
    TaskGone,
    TaskReader,
    parse_oom_score,
    parse_oom_score_adj,
    parse_status_memory,
)
from oomtop.model import CgroupKind, Identity
from oomtop.ui.themes import OOMTOP_COLORS, TEXTUAL_COLORS, ThemeError, ThemeSpec, load_file, to_textual
from tests.fakehost import FakeHost, FakeProcess
from tests.strategies import cgroup_names, garbage_bytes, kube_paths, numbers_text

CONTAINERD = "run/containerd/io.containerd.runtime.v2.task/k8s.io"
CRIO = "run/containers/storage/overlay-containers"
PODS = {  # uid -> (name, namespace): two pods whose names must never be swapped
    "1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d": ("web-0", "shop"),
    "9f8e7d6c-5b4a-4321-8fed-cba987654321": ("db-0", "data"),
}
UID, OTHER = list(PODS)
CID = "c" * 64
CID2 = "d" * 64


# ------------------------------------------------------------------------------------------- identity


@given(kube_paths(), st.lists(cgroup_names, max_size=3), st.sampled_from(["", "/docker/" + "e" * 64, "/a b/c"]))
def test_identify_keeps_the_pod_the_path_names(path: str, below: list[str], prefix: str) -> None:
    """Whatever lies below a container (nesting runtimes, odd names), it stays that container of that pod."""
    uid = re.search(r"pod([0-9a-f_-]{36})", path)[1].replace("_", "-")  # type: ignore[index]
    ident = identify(prefix + "/".join([path, *below]))
    assert ident.pod is not None and ident.pod.uid == uid
    assert ident.container is not None and ident.kind in (CgroupKind.CONTAINER, CgroupKind.CONMON)
    assert ident.container.id == path.rsplit("/", 1)[1].removesuffix(".scope").rsplit("-", 1)[-1]


@given(st.one_of(st.text(max_size=300), st.lists(cgroup_names, max_size=6).map("/".join)))
def test_identify_never_raises(path: str) -> None:
    ident = identify(path, NodeNames.empty())
    assert isinstance(ident, Identity) and isinstance(ident.label, str)
    if ident.pod is not None:
        assert ident.pod.uid and ident.pod.uid == ident.pod.uid.lower()


_ANNOTATION_KEYS = {
    "name": ("io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"),
    "ns": ("io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace"),
    "uid": ("io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid"),
    "other": ("io.kubernetes.cri.container-name", "io.kubernetes.container.name", "io.kubernetes.cri.container-type",
              "io.kubernetes.cri.sandbox-id", "io.kubernetes.cri-o.ContainerType", "unrelated"),
}  # fmt: skip
_JSON_JUNK = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def annotations(draw: st.DrawFn) -> object:
    """A config.json's annotations: real pods' names and uids mixed with wrong types, empty and missing keys."""
    if draw(st.integers(0, 9)) == 0:
        return draw(_JSON_JUNK)
    out: dict[str, object] = {}
    for what, keys in _ANNOTATION_KEYS.items():
        for key in keys:
            if not draw(st.booleans()):
                continue
            uid = draw(st.sampled_from(list(PODS)))
            good = {"name": PODS[uid][0], "ns": PODS[uid][1], "uid": uid}.get(what, draw(st.text(max_size=8)))
            out[key] = draw(st.one_of(st.just(good), st.just(uid.upper()), st.just(""), _JSON_JUNK))
    return out


def _claims(docs: list[object]) -> tuple[set[str], set[str]]:
    """The pod names and namespaces a record may tie to ``UID``: from a config.json whose uid is UID, or from
    one that names no uid at all (oomtop then takes the container's word).  A name found only in records of
    another uid is never UID's."""
    names, namespaces = {PODS[UID][0]}, {PODS[UID][1]}
    for doc in docs:
        ann = doc.get("annotations") if isinstance(doc, dict) else None
        if not isinstance(ann, dict):
            continue

        def values(what: str, ann: dict[str, object] = ann) -> set[str]:
            return {v for k in _ANNOTATION_KEYS[what] if isinstance(v := ann.get(k), str) and v}

        uids = {u.lower() for u in values("uid")}
        if UID in uids or not uids:
            names |= values("name")
            namespaces |= values("ns")
    return names, namespaces


@given(
    st.lists(st.tuples(st.sampled_from([CID, CID2, CID.upper()]), st.sampled_from([CONTAINERD, CRIO]), annotations()),
             max_size=5),
    st.booleans(),
    st.sampled_from([f"/kubepods/burstable/pod{UID}/{CID}", f"/kubepods.slice/kubepods-burstable.slice/"
                     f"kubepods-burstable-pod{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope"]),
)  # fmt: skip
def test_config_json_never_names_the_wrong_pod(bundles: list[tuple[str, str, object]], logged: bool, path: str) -> None:
    """Runtime bundles with wrong JSON types, missing keys, other pods' uids and names, the same container in two
    runtimes' directories: the container's pod keeps the uid its cgroup names, and a name only if one record ties
    that name to that uid."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        docs: list[object] = []
        for cid, rel, ann in bundles:
            sub = "userdata/config.json" if rel == CRIO else "config.json"
            target = root / rel / cid / sub
            target.parent.mkdir(parents=True, exist_ok=True)
            doc = {"ociVersion": "1.0.2", "annotations": ann}
            target.write_text(json.dumps(doc))
            docs.append(doc)
        if logged:
            (root / "var/log/pods" / f"data_db-0_{OTHER}" / "db").mkdir(parents=True)
        names = NodeNames.load(str(root))
        ident = identify(path, names)
        assert ident.pod is not None and ident.pod.uid == UID
        names_ok, namespaces_ok = _claims(docs)
        for named in (names.pod(UID), (ident.pod.name, ident.pod.namespace)):
            assert named == (None, None) or named is None or (named[0] in names_ok and named[1] in namespaces_ok)


@given(st.one_of(garbage_bytes(3000), _JSON_JUNK.map(lambda d: json.dumps(d).encode())))
def test_config_json_garbage_is_no_name(raw: bytes) -> None:
    """A config.json that is not a JSON object of string annotations names nothing, and never raises."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / CONTAINERD / CID / "config.json"
        target.parent.mkdir(parents=True)
        target.write_bytes(raw)
        names = NodeNames.load(tmp)
        info = names.container(CID)
        assert info is None or isinstance(info.name, str | None)


def test_two_bundles_of_one_container_naming_different_pods() -> None:
    """Found while writing the property above (its 60 CI examples rarely draw it): a container's config.json
    in containerd's directory named pod A (uid, name, namespace) and one in CRI-O's named only pod B's uid; the
    merge took B's uid with A's name and namespace, and every cgroup of pod B was shown as pod A."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        a = {"io.kubernetes.cri.sandbox-uid": UID, "io.kubernetes.cri.sandbox-name": "web-0",
             "io.kubernetes.cri.sandbox-namespace": "shop"}  # fmt: skip
        b = {"io.kubernetes.pod.uid": OTHER}
        for rel, sub, ann in ((CONTAINERD, "config.json", a), (CRIO, "userdata/config.json", b)):
            (root / rel / CID / sub).parent.mkdir(parents=True)
            (root / rel / CID / sub).write_text(json.dumps({"annotations": ann}))
        names = NodeNames.load(tmp)
        assert names.pod(OTHER) is None
        ident = identify(f"/kubepods/besteffort/pod{OTHER}/{CID}", names)
        assert ident.pod is not None and ident.pod.name is None


# ------------------------------------------------------------------------------------------ file parsers


def _plain(raw: bytes) -> int | None:
    """What a one-number file holds when the kernel wrote it: ASCII digits below 2**64, then the newline (other
    trailing blanks change no number, so they are let through)."""
    text = raw.rstrip()
    return int(text) if text.isdigit() and len(text) <= 20 and int(text) < MAX_COUNTER else None


@given(
    st.one_of(
        numbers_text.map(lambda s: (s + "\n").encode()),
        garbage_bytes(60),
    )
)
def test_one_number_files(raw: bytes) -> None:
    """memory.current, limit_in_bytes, oom.group ...: the number written, or None; never a garbage number."""
    value = parse_int(raw)
    assert value is None or value == _plain(raw)
    if _plain(raw) is not None:
        assert value == _plain(raw)
    for limit in (parse_v1_limit(raw), parse_v2_limit(raw)):
        assert limit is None or (limit == value and limit < 1 << 62)


def test_garbage_numbers_are_not_numbers() -> None:
    """Found by the properties: Python's int() reads "1_000", "+5", "-1" and 2**70, none of which a cgroup file
    holds; they were taken as usage, limits and counters."""
    for raw in (b"1_000\n", b"+5\n", b"-1\n", str(2**70).encode(), b" 5\n", "٣".encode()):
        assert parse_int(raw) is None, raw
    assert parse_flat_keyed(b"oom 1\noom_kill 2\noom_kill 3\nmax -4\n") == {"oom": 1}  # twice: which one?
    assert parse_stat_keys(b"anon 1_0\nfile 6\ninactive_file 3\ninactive_file 9\n", V2_STAT_KEYS) == {"file": 6}
    assert parse_pids(b"12\n" + b"9" * 5000 + b"\n-3\n1_0\n") == (12,)
    assert parse_v2_limit(b" 1\n") is None and parse_v2_limit(b"max\n") is None  # nightly: " 1" was read as 1
    assert parse_flat_keyed(b"oom_kill 0\noom_kill \n") == {}  # nightly: a valueless second line was not seen


_KEYS = st.sampled_from(["anon", "file", "kernel", "inactive_file", "shmem", "total_rss", "total_cache", "oom_kill",
                         "under_oom", "max", "oom", "oom_group_kill", "total_inactive_file", "total_swap"])  # fmt: skip


@given(st.lists(st.tuples(_KEYS, numbers_text), max_size=12), garbage_bytes(80))
def test_keyed_files(pairs: list[tuple[str, str]], noise: bytes) -> None:
    """memory.stat, memory.events, oom_control with odd numbers, missing and duplicate keys: a key is given only
    when the file has it once, with a plain number, and that number is given."""
    raw = "".join(f"{k} {v}\n" for k, v in pairs).encode() + noise
    lines = raw.split(b"\n")
    for parsed in (parse_flat_keyed(raw), parse_stat_keys(raw, V1_STAT_KEYS + V2_STAT_KEYS)):
        for key, value in parsed.items():
            found = [line for line in lines if line.startswith(key.encode() + b" ")]
            assert len(found) == 1 and _plain(found[0].split(b" ", 1)[1]) == value, (key, found)


_PSI_SHAPED = st.tuples(
    st.sampled_from(["some", "full"]),
    st.lists(st.floats(0, 999.99), min_size=3, max_size=3),
    st.integers(0, 2**70),
).map(lambda t: f"{t[0]} avg10={t[1][0]:.2f} avg60={t[1][1]:.2f} avg300={t[1][2]:.2f} total={t[2]}")


@given(
    st.one_of(
        st.lists(_PSI_SHAPED, min_size=1, max_size=2).map("\n".join).map(str.encode),
        garbage_bytes(200),
        st.lists(
            st.sampled_from(
                [
                    "some",
                    "full",
                    "avg10=0.00",
                    "avg60=1.50",
                    "avg300=100.00",
                    "avg10=nan",
                    "avg60=inf",
                    "avg300=-1.00",
                    "total=12",
                    "total=-1",
                    "total=" + "9" * 30,
                    "total=" + "9" * 20,
                    "avg10=250.00",
                    "avg60=100.01",
                    "avg10=1e3",
                    " ",
                    "\n",
                ]
            ),
            max_size=20,
        )
        .map(" ".join)
        .map(str.encode),
    )
)
def test_pressure_files(raw: bytes) -> None:
    """memory.pressure: shares are 0..100 % and totals 64-bit, else no Pressure at all."""
    pressure = parse_pressure(raw)
    if pressure is not None:
        shares = (pressure.some_avg10, pressure.some_avg60, pressure.some_avg300, pressure.full_avg10,
                  pressure.full_avg60, pressure.full_avg300)  # fmt: skip
        assert all(math.isfinite(s) and 0 <= s <= 100 for s in shares)
        assert 0 <= pressure.some_total_us < MAX_COUNTER and 0 <= pressure.full_total_us < MAX_COUNTER


@given(garbage_bytes(300))
def test_pids_are_words_of_the_file(raw: bytes) -> None:
    words = raw.split()
    assert all(str(pid).encode() in words for pid in parse_pids(raw))


@given(garbage_bytes(600), st.sampled_from([b"", b"Name:\tx\nRssAnon:\t", b"\nRssAnon:\t5 kB\nVmSwap:\t"]))
def test_status_memory(raw: bytes, head: bytes) -> None:
    memory = parse_status_memory(head + raw)
    assert all(0 <= v < 1 << 80 for v in (memory.anon, memory.file, memory.shmem, memory.pte, memory.swap))


@given(st.one_of(numbers_text.map(str.encode), garbage_bytes(20)))
def test_oom_score_files(raw: bytes) -> None:
    assert -1000 <= parse_oom_score_adj(raw) <= 1000
    score = parse_oom_score(raw)
    assert score is None or 0 <= score <= 2000


@given(st.text(max_size=400), st.one_of(numbers_text, st.sampled_from(["²", "9" * 5000, "12 kB", "-5 kB"])))
def test_meminfo(text: str, figure: str) -> None:
    """Found: "MemTotal: ²" (str.isdigit says yes, int says no) and a 5000-digit figure raised ValueError."""
    values = parse_meminfo(text + f"\nMemTotal: {figure} kB\n")
    assert all(isinstance(v, int) and v >= 0 for v in values.values())


# ----------------------------------------------------------------------------------- readers on a fake host

_CGROUP_FILES = {
    1: ["memory.usage_in_bytes", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.max_usage_in_bytes",
        "memory.failcnt", "memory.oom_control", "memory.stat", "cgroup.procs"],
    2: ["memory.current", "memory.max", "memory.high", "memory.peak", "memory.swap.current", "memory.swap.max",
        "memory.oom.group", "memory.events", "memory.events.local", "memory.stat", "memory.pressure", "cgroup.procs"],
}  # fmt: skip


@given(st.sampled_from([1, 2]), st.data())
def test_cgroup_reader_on_garbage_files(version: int, data: st.DataObject) -> None:
    """Every file of a cgroup replaced by garbage: the reader gives a Cgroup (or says the cgroup is gone when
    its usage is unreadable), with no negative and no beyond-64-bit figure."""
    with tempfile.TemporaryDirectory() as tmp:
        host = FakeHost(Path(tmp), layout="v1" if version == 1 else "v2")
        host.add_cgroup("/pod", limit=1 << 30, pids=(1,))
        for name in data.draw(st.lists(st.sampled_from(_CGROUP_FILES[version]), unique=True, min_size=1)):
            host.set_file("/pod", name, "")
            (host.cgroup_dir("/pod") / name).write_bytes(data.draw(garbage_bytes(200)))
        reader = CgroupReader(MemoryHierarchy(version, str(host.memory_root), "v1" if version == 1 else "v2"),
                              "/pod", Identity(kind=CgroupKind.PLAIN), None)  # fmt: skip
        for slow in (True, False):
            try:
                cgroup = reader.read(slow, PidFilter())
            except CgroupGone:
                return
            figures = [cgroup.usage_bytes, cgroup.limit_bytes, cgroup.peak_bytes, cgroup.failcnt, cgroup.anon_bytes,
                       cgroup.file_bytes, cgroup.inactive_file_bytes, cgroup.swap_bytes, cgroup.oom_kills]  # fmt: skip
            assert all(f is None or 0 <= f < MAX_COUNTER for f in figures), figures


_PROC_FILES = ["stat", "statm", "status", "oom_score", "oom_score_adj", "cmdline"]


@given(st.data())
def test_task_reader_on_garbage_files(data: st.DataObject) -> None:
    """/proc/<pid>/status, statm, oom_score(_adj) garbage: a Task with sane figures, or TaskGone; nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        host = FakeHost(Path(tmp))
        host.add_process(FakeProcess(42))
        for name in data.draw(st.lists(st.sampled_from(_PROC_FILES), unique=True, min_size=1)):
            (host.proc / "42" / name).write_bytes(data.draw(garbage_bytes(300)))
        try:
            reader = TaskReader(str(host.proc), 42, None, 4096, False)
            for slow in (True, False, True):
                task = reader.read("/", slow)
                assert -1000 <= task.oom_score_adj <= 1000
                assert task.oom_score is None or 0 <= task.oom_score <= 2000
                sizes = (task.rss_anon_bytes, task.rss_file_bytes, task.rss_shmem_bytes, task.swap_bytes,
                         task.pgtables_bytes)  # fmt: skip
                assert all(0 <= s < 1 << 80 for s in sizes), sizes
        except TaskGone:
            pass


@given(st.text(max_size=200), garbage_bytes(200))
def test_node_reader_on_garbage(stat: str, meminfo: bytes) -> None:
    """Found: /proc/stat with a bare "btime" (or "btime x") raised out of NodeReader()."""
    with tempfile.TemporaryDirectory() as tmp:
        host = FakeHost(Path(tmp))
        (host.proc / "stat").write_text(stat + "\nbtime" + stat[:5], encoding="utf-8", errors="surrogateescape")
        (host.proc / "meminfo").write_bytes(meminfo)
        info = NodeReader(str(host.proc), None).read()
        assert info.mem_total_bytes >= 0 and info.boot_time >= 0


# -------------------------------------------------------------------------------------------------- themes

_COLOURS = st.one_of(st.sampled_from(["#336699", "red", "rgb(1,2,3)", "ansi_red", "#fff", "nope", "", "#12345",
                                      "hsl(1e400,1%,1%)", "\x1b[31m"]), st.text(max_size=10), st.integers(),
                     st.booleans(), st.lists(st.integers(), max_size=2))  # fmt: skip


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


@st.composite
def theme_documents(draw: st.DrawFn) -> str:
    """TOML that looks like a theme: known and unknown keys and sections, wrong types, bad colours."""
    lines = []
    for key in draw(st.lists(st.sampled_from(["name", "description", "dark", "colours", "extra"]), unique=True)):
        lines.append(f"{key} = {_toml_value(draw(st.one_of(st.text(max_size=12), st.booleans(), st.integers())))}")
    for section, known in (("colors", TEXTUAL_COLORS), ("oomtop", tuple(OOMTOP_COLORS)), ("variables", ("x-y",))):
        if draw(st.booleans()):
            lines.append(f"[{section}]")
            for key in draw(st.lists(st.one_of(st.sampled_from(known), st.text("abcxyz-", min_size=1)), unique=True,
                                     max_size=5)):  # fmt: skip
                lines.append(f"{json.dumps(key)} = {_toml_value(draw(_COLOURS))}")
    if draw(st.booleans()):
        lines.append(draw(st.sampled_from(["[colors", "x = [" * 3000, "a = 1\na = 2", "[[colors]]", "= 1"])))
    return "\n".join(lines)


@given(st.one_of(theme_documents(), garbage_bytes(300).map(lambda b: b.decode("utf-8", "surrogateescape"))),
       st.sampled_from(["mine.toml", "bad\nname.toml"]))  # fmt: skip
def test_theme_files_give_a_theme_or_one_line(body: str, filename: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        path.write_bytes(body.encode("utf-8", "surrogateescape"))
        try:
            spec = load_file(path, user=True)
        except ThemeError as error:
            message = str(error)
            assert "\n" not in message and "\r" not in message and len(message) < 600, message
            return
        assert isinstance(spec, ThemeSpec) and spec.name.isprintable() and "primary" in spec.colors
        to_textual(spec)


def test_deeply_nested_theme_is_one_line(tmp_path: Path) -> None:
    """Found: tomllib recurses into nested arrays; a theme of "x = [[[[..." raised RecursionError (a traceback at
    start) instead of the one-line ThemeError."""
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 5000)
    with pytest.raises(ThemeError, match="nested too deep"):
        load_file(path)
