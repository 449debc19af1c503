"""``oomtop serve``: the metric families of a fixture node, the kill ledger, the exporter's formats and health,
and the command as a user runs it (HTTP on loopback, its errors)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from oomtop.model import OomEvent, Sample
from oomtop.report import View
from oomtop.serve.command import listen_address
from oomtop.serve.exporter import OPENMETRICS, PROMETHEUS_TEXT, Exporter, Renderer
from oomtop.serve.http import MetricsServer
from oomtop.serve.metrics import MAX_COMMS, OTHER, Cap, KillLedger, sample_families
from tests.ui_fixtures import (
    CID_WEB,
    FIXED_TIME,
    UID_BATCH,
    UID_CACHE,
    UID_WEB,
    MiB,
    collect,
    global_event,
    kill_event,
    kube_host,
    plain_host,
)

REPO = Path(__file__).resolve().parent.parent
WEB_APP = {"namespace": "shop", "pod": "web-0", "pod_uid": UID_WEB, "qos": "Burstable", "container": "app"}


@pytest.fixture
def sample(tmp_path: Path) -> Sample:
    return collect(kube_host(tmp_path / "host", "v1"))


def values(families: list, name: str) -> dict[frozenset[tuple[str, str]], float]:  # type: ignore[type-arg]
    return {frozenset(s.labels.items()): s.value for f in families for s in f.samples if s.name == name}


def one(families: list, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    """The value of the one series of ``name`` whose labels are exactly ``labels``."""
    found = values(families, name)
    key = frozenset(labels.items())
    assert key in found, f"no {name}{labels}; there are {sorted(map(dict, found))}"
    return found[key]


# ------------------------------------------------------------------------------------------ the families


def test_memory_figures_per_pod_and_container(sample: Sample) -> None:
    families = sample_families(View.of(sample), Cap(100), Cap(20))
    app = next(c for c in sample.cgroups if c.path.endswith(CID_WEB))
    assert one(families, "oomtop_memory_usage_bytes", **WEB_APP) == 471 * MiB
    assert one(families, "oomtop_memory_working_set_bytes", **WEB_APP) == app.working_set_bytes == 431 * MiB
    assert one(families, "oomtop_memory_limit_bytes", **WEB_APP) == 512 * MiB
    assert one(families, "oomtop_memory_effective_limit_bytes", **WEB_APP) == 512 * MiB
    assert one(families, "oomtop_memory_headroom_bytes", **WEB_APP) == (512 - 431) * MiB
    pod = {k: v for k, v in WEB_APP.items() if k != "container"}
    assert one(families, "oomtop_memory_limit_bytes", **pod) == 768 * MiB
    # BestEffort: no limit of its own nor above it: no limit series, no effective limit, no headroom
    batch = {"namespace": "jobs", "pod": "batch-7", "pod_uid": UID_BATCH, "qos": "BestEffort", "container": "worker"}
    assert frozenset(batch.items()) in values(families, "oomtop_memory_usage_bytes")
    for name in ("limit", "effective_limit", "headroom"):
        assert frozenset(batch.items()) not in values(families, f"oomtop_memory_{name}_bytes")
    # the pause container and the node's own slices are not workloads
    labelled = [dict(k) for k in values(families, "oomtop_memory_usage_bytes")]
    assert len(labelled) == 9 and all("pod_uid" in labels for labels in labelled)


def test_a_container_without_a_limit_takes_its_pods(tmp_path: Path) -> None:
    host = kube_host(tmp_path / "host", "v1")
    web = f"/kubepods/burstable/pod{UID_WEB}"
    host.add_cgroup(f"{web}/{'ab' * 32}", usage=50 * MiB, inactive_file=10 * MiB)  # no limit of its own
    families = sample_families(View.of(collect(host)), Cap(100), Cap(20))
    unlimited = {**WEB_APP, "container": "ab" * 6}
    assert frozenset(unlimited.items()) not in values(families, "oomtop_memory_limit_bytes")
    assert one(families, "oomtop_memory_effective_limit_bytes", **unlimited) == 768 * MiB
    assert one(families, "oomtop_memory_headroom_bytes", **unlimited) == (768 - 40) * MiB


def test_adj_expected_by_qos_and_actual(sample: Sample) -> None:
    families = sample_families(View.of(sample), Cap(100), Cap(20))
    cache = {"namespace": "kube-system", "pod": "cache-0", "pod_uid": UID_CACHE, "qos": "Guaranteed"}
    assert one(families, "oomtop_oom_score_adj", **cache, container="redis", kind="expected") == -997
    assert one(families, "oomtop_oom_score_adj", **cache, container="redis", kind="actual") == -997
    assert one(families, "oomtop_oom_score_adj", **WEB_APP, kind="actual") == 936
    # Burstable: kubelet's value depends on the request, which the node does not know: no "expected"
    assert frozenset({**WEB_APP, "kind": "expected"}.items()) not in values(families, "oomtop_oom_score_adj")


def test_predicted_victims_per_domain(sample: Sample) -> None:
    view = View.of(sample)
    families = sample_families(view, Cap(100), Cap(20))
    victims = [dict(k) for k in values(families, "oomtop_predicted_victim_score")]
    by_domain = {(v["domain"], v.get("container", v.get("pod", ""))): v for v in victims}
    assert by_domain[("container", "app")]["victim_comm"] == "java"
    assert by_domain[("pod", "web-0")]["victim_container"] == "app"
    assert by_domain[("node", "")] == {
        "domain": "node", "victim_namespace": "jobs", "victim_pod": "batch-7", "victim_pod_uid": UID_BATCH,
        "victim_container": "worker", "victim_comm": "python3",
    }  # fmt: skip
    assert not any("pid" in key for v in victims for key in v)  # a restart makes no new series
    # the score is the kernel's: points per 1000 pages of the domain, as the UI shows it
    java = next(t for t in sample.tasks if t.pid == 2201)
    container = next(c.path for c in sample.cgroups if c.path.endswith(CID_WEB))
    assert (
        one(families, "oomtop_predicted_victim_score", **by_domain[("container", "app")])
        == (view.prediction.memcg_score[java.key])
    )
    assert view.prediction.by_domain[container].victim == java


def test_plain_cgroups_only_with_a_limit_and_capped(tmp_path: Path) -> None:
    host = plain_host(tmp_path / "host")
    for i in range(5):
        host.add_cgroup(f"/system.slice/limited-{i}.service", usage=10 * MiB, limit=64 * MiB)
    plain = Cap(3)
    families = sample_families(View.of(collect(host)), plain, Cap(20))
    paths = sorted(dict(k)["cgroup"] for k in values(families, "oomtop_memory_usage_bytes"))
    assert len(paths) == 3 and "/system.slice/postgresql.service" not in paths  # no limit: not exported
    assert all(values(families, "oomtop_memory_limit_bytes")[frozenset({("cgroup", p)})] for p in paths)


def test_the_rendered_scrape_passes_promtool(sample: Sample) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's prometheus brings it)")
    exporter = Exporter(0.5, wall_clock=lambda: FIXED_TIME + 1)
    ledger = KillLedger()
    ledger.add(kill_event(sample, at=FIXED_TIME - 5))
    exporter.publish([*sample_families(View.of(sample), ledger.plain, ledger.comms), *ledger.families()], FIXED_TIME)
    body, _ = exporter.scrape("")
    done = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == b"" and done.stderr.strip() == b"", "promtool found lint problems"


# ------------------------------------------------------------------------------------------- the ledger


def _killed(event: OomEvent, comm: str) -> OomEvent:
    victim = dataclasses.replace(event.victim, comm=comm)
    return dataclasses.replace(event, victim=victim, killed=(victim,))


def test_kills_count_live_not_history_and_survive_a_recreated_container(sample: Sample) -> None:
    ledger = KillLedger()
    assert not ledger.add(kill_event(sample, historical=True))  # in the ring buffer before oomtop started
    assert ledger.kills == {}
    assert ledger.add(kill_event(sample))
    # the container's cgroup is removed and recreated: the same pod and container name, the count goes on
    assert ledger.add(kill_event(sample, at=FIXED_TIME + 60))
    key = tuple(sorted({**WEB_APP, "victim_comm": "java", "kind": "memcg"}.items()))
    assert ledger.kills == {key: 2}
    assert ledger.predictions == {"right": 2, "wrong": 0, "unknown": 0}
    ledger.add(kill_event(sample, predicted=2202))
    ledger.add(global_event(predicted=None))
    assert ledger.predictions == {"right": 2, "wrong": 1, "unknown": 1}
    # a node-wide kill whose victim the log placed in no pod: counted by its process name and kind alone
    assert ledger.kills[(("kind", "global"), ("victim_comm", "python3"))] == 1


def test_victim_names_are_capped(sample: Sample) -> None:
    ledger = KillLedger()
    for i in range(MAX_COMMS + 5):
        ledger.add(_killed(kill_event(sample), f"proc-{i}"))
    comms = {dict(key)["victim_comm"] for key in ledger.kills}
    assert len(comms) == MAX_COMMS + 1 and OTHER in comms
    assert sum(ledger.kills.values()) == MAX_COMMS + 5  # nothing lost: the rest are counted as "other"
    ledger.add(_killed(kill_event(sample), "proc-0"))  # a name already kept keeps its own series
    assert ledger.kills[tuple(sorted({**WEB_APP, "victim_comm": "proc-0", "kind": "memcg"}.items()))] == 2


def test_cap_is_first_come_and_stable() -> None:
    cap = Cap(2)
    assert [cap(v) for v in ("a", "b", "c", "a", "d", "b")] == ["a", "b", OTHER, "a", OTHER, "b"]


# ------------------------------------------------------------------------------------------ the exporter


def test_both_formats_parse_and_openmetrics_ends_in_eof(sample: Sample) -> None:
    clock = [FIXED_TIME + 2.5]
    exporter = Exporter(0.5, wall_clock=lambda: clock[0])
    exporter.kmsg_readable = True
    exporter.publish(sample_families(View.of(sample), Cap(100), Cap(20)), FIXED_TIME)
    body, content_type = exporter.scrape("application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    assert content_type == OPENMETRICS and body.endswith(b"# EOF\n") and body.count(b"# EOF") == 1
    om = {f.name: f for f in parse_openmetrics(body.decode())}
    assert om["oomtop_sample_age_seconds"].samples[0].value == pytest.approx(2.5)
    assert om["oomtop_kmsg_readable"].samples[0].value == 1
    assert om["oomtop_build"].type == "info"
    text, content_type = exporter.scrape("*/*")
    assert content_type == PROMETHEUS_TEXT and b"# EOF" not in text
    parsed = {f.name: f for f in parse_text(text.decode())}
    assert parsed["oomtop_memory_usage_bytes"].type == "gauge"
    assert {s.name for s in parsed["oomtop_memory_usage_bytes"].samples} == {"oomtop_memory_usage_bytes"}


def test_one_sample_is_rendered_once_however_many_scrape(sample: Sample, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = Renderer.render

    def counting(self: Renderer, families: list, openmetrics: bool) -> bytes:  # type: ignore[type-arg]
        families = list(families)
        calls.append(len(families))
        return real(self, families, openmetrics)

    monkeypatch.setattr(Renderer, "render", counting)
    exporter = Exporter(0.5)
    exporter.publish(sample_families(View.of(sample), Cap(100), Cap(20)), FIXED_TIME)
    bodies = {exporter.scrape("")[0].split(b"# HELP oomtop_sample_age")[0] for _ in range(10)}
    assert len(bodies) == 1
    big = [n for n in calls if n > 1]  # the Sample's families; the age family alone is rendered per scrape
    assert big == [len(exporter._snapshot.families)]  # type: ignore[union-attr]


def _parsed(families: object) -> list[tuple[str, str, list[tuple[str, dict[str, str], float]]]]:
    return [(f.name, f.type, [(s.name, s.labels, s.value) for s in f.samples]) for f in families]  # type: ignore[attr-defined]


@pytest.mark.parametrize("openmetrics", [True, False])
def test_the_renderer_writes_what_prometheus_client_writes(sample: Sample, openmetrics: bool) -> None:
    """oomtop's own writer against the library's, on a whole node plus hostile label values: both parse to the
    same families and samples with prometheus_client's own parsers."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
    from prometheus_client.registry import Collector

    ledger = KillLedger()
    ledger.add(kill_event(sample))
    hostile = _killed(kill_event(sample), 'a"b\\c\nd')
    ledger.add(hostile)
    families = [*sample_families(View.of(sample), ledger.plain, ledger.comms), *ledger.families()]
    exporter = Exporter(0.5)
    exporter.publish(families, FIXED_TIME)
    families = exporter._snapshot.families  # type: ignore[union-attr]

    class Fixed(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            return iter(families)

    ours = Renderer().render(families, openmetrics).decode()
    theirs = (generate_openmetrics(Fixed()) if openmetrics else generate_latest(Fixed())).decode()  # type: ignore[no-untyped-call]
    parse = parse_openmetrics if openmetrics else parse_text
    assert _parsed(parse(ours)) == _parsed(parse(theirs))
    assert 'victim_comm="a\\"b\\\\c\\nd"' in ours


def test_health_fresh_stale_and_before_the_first_sample(sample: Sample) -> None:
    now = [100.0]
    exporter = Exporter(0.5, monotonic=lambda: now[0])
    fresh, why = exporter.health()
    assert not fresh and why.startswith("no sample yet")
    exporter.publish([], FIXED_TIME)
    now[0] += 1.4
    assert exporter.health() == (True, "ok: the last sample is 1.40 s old")
    now[0] += 0.2  # 1.6 s: more than 3 intervals of 0.5 s
    exporter.error("collection stopped: boom")
    fresh, why = exporter.health()
    assert not fresh and "1.6 s old" in why and "boom" in why


# ------------------------------------------------------------------------------------- HTTP, as run


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, accept: str = "") -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_the_server_answers_metrics_health_and_nothing_else(sample: Sample) -> None:
    exporter = Exporter(0.5)
    server = MetricsServer("127.0.0.1", 0, exporter)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.address[1]}"
        status, _, body = _get(base + "/healthz")
        assert status == 503 and body.startswith(b"no sample yet")
        exporter.publish(sample_families(View.of(sample), Cap(100), Cap(20)), time.time())
        status, content_type, body = _get(base + "/metrics", "application/openmetrics-text")
        assert status == 200 and content_type == OPENMETRICS and b'container="app"' in body
        assert _get(base + "/healthz")[0] == 200
        assert _get(base + "/nothing")[0] == 404
        request = urllib.request.Request(base + "/metrics", method="POST", data=b"x")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 405
    finally:
        server.close()


@pytest.mark.parametrize(
    ("text", "error"),
    [("9842", "expected HOST:PORT"), ("localhost:http", "not a port number"), ("0.0.0.0:70000", "port out of range")],
)
def test_listen_address_errors(text: str, error: str) -> None:
    from oomtop.serve.command import ServeError

    with pytest.raises(ServeError, match=f"--listen: {error}"):
        listen_address(text)
    assert listen_address("[::1]:9842") == ("::1", 9842)


@pytest.fixture
def serve_fixture(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``oomtop serve`` over a fixture node (its / at --host-root), on a free loopback port."""
    kube_host(tmp_path / "host", "v2")
    port = _free_port()
    command = [sys.executable, "-m", "oomtop", "serve", "--host-root", str(tmp_path / "host"), "--kmsg", "none",
               "--listen", f"127.0.0.1:{port}", "--interval", "0.2"]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if _get(base + "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            raise AssertionError(
                "serve never became healthy; stderr: " + (process.stderr.read() if process.stderr else "")
            )
        yield process, base
    finally:
        process.terminate()
        process.wait(10)


def test_serve_command_end_to_end(serve_fixture: tuple[subprocess.Popen[str], str]) -> None:
    process, base = serve_fixture
    status, content_type, body = _get(base + "/metrics")
    assert status == 200 and content_type == PROMETHEUS_TEXT
    families = {f.name: f for f in parse_text(body.decode())}
    app = [s for s in families["oomtop_memory_limit_bytes"].samples if s.labels.get("container") == "app"]
    assert [s.value for s in app] == [512 * MiB]
    assert families["oomtop_kmsg_readable"].samples[0].value == 0  # --kmsg none
    process.terminate()
    assert process.wait(10) == 0  # SIGTERM: a clean exit


def test_a_port_in_use_is_one_line_and_status_2(serve_fixture: tuple[subprocess.Popen[str], str]) -> None:
    _, base = serve_fixture
    done = subprocess.run(
        [sys.executable, "-m", "oomtop", "serve", "--kmsg", "none", "--listen", base.removeprefix("http://")],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "cannot listen on 127.0.0.1:" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_bad_flags_and_an_unreadable_log_are_one_line(tmp_path: Path) -> None:
    bad = subprocess.run([sys.executable, "-m", "oomtop", "serve", "--listen", "nowhere"], cwd=REPO,
                         capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert bad.stderr.startswith("oomtop serve: --listen: expected HOST:PORT") and "Traceback" not in bad.stderr
    missing = str(tmp_path / "no-kmsg")
    done = subprocess.run([sys.executable, "-m", "oomtop", "serve", "--kmsg", missing, "--listen", "127.0.0.1:0"],
                          cwd=REPO, capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"cannot read the kernel log {missing}" in done.stderr and "--kmsg none" in done.stderr


def test_serve_never_imports_textual() -> None:
    code = "import sys, oomtop.serve.command, oomtop.serve.http, oomtop.serve.exporter; " \
           "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))))"  # fmt: skip
    done = subprocess.run([sys.executable, "-c", "import json; " + code], cwd=REPO, capture_output=True, text=True,
                          check=False, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_a_gzip_scrape_is_the_same_exposition(sample: Sample) -> None:
    """Prometheus asks for gzip: the Sample's body is compressed once and sent with the age as a second gzip
    member, which decompresses (as Go's reader does, multistream) to exactly the plain scrape."""
    import gzip

    exporter = Exporter(0.5, wall_clock=lambda: FIXED_TIME + 1)
    exporter.publish(sample_families(View.of(sample), Cap(100), Cap(20)), FIXED_TIME)
    for accept in ("application/openmetrics-text", ""):
        plain, content_type = exporter.scrape(accept)
        packed, packed_type = exporter.scrape(accept, gzipped=True)
        assert packed_type == content_type and gzip.decompress(packed) == plain
        assert len(packed) < len(plain) / 4
    server = MetricsServer("127.0.0.1", 0, exporter)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.address[1]}/metrics"
        request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(response.read()) == exporter.scrape("")[0]
    finally:
        server.close()


@pytest.mark.parametrize("command", ["serve", "events", "record", "explain"])
def test_source_flags_mean_the_same_before_or_after_the_subcommand(command: str) -> None:
    """``oomtop --host-root /host serve`` once lost its flag: the subcommand's default replaced it silently."""
    from oomtop.cli import build_parser

    parser = build_parser()
    extra = ["out.oomrec"] if command == "record" else []
    flags = ["--metadata-root", "/meta"] if command == "explain" else ["--host-root", "/host", "--kmsg", "none"]
    before = parser.parse_args([*flags, command, *extra])
    after = parser.parse_args([command, *extra, *flags])
    for name in ("host_root", "kmsg", "metadata_root", "interval"):
        assert getattr(before, name, None) == getattr(after, name, None)
    assert (before.metadata_root if command == "explain" else before.host_root) in ("/meta", "/host")
