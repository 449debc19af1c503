"""The Prometheus side of ``oomtop serve``: the alert rules in deploy/prometheus/ and a real Prometheus scraping
a real ``oomtop serve`` through a real OOM kill.

1. ``promtool check rules`` accepts deploy/prometheus/oomtop-rules.yaml, and ``promtool test rules`` passes its
   unit tests (oomtop-rules.test.yaml: each alert fires when it should and stays quiet when it should not).
2. End to end on a cgroup v1 kernel: ``python -m oomtop serve --interval 0.5`` and Debian's ``prometheus``
   (scraping it every second, evaluating the rules every second, its own config and storage in a tmp dir), both
   on 127.0.0.1 only.  In a kubepods-shaped container (a TestHierarchy under its own unique parent) a small
   first process (the container's "PID 1") keeps running while a second, bigger one is OOM-killed; then the
   container's cgroup is removed and recreated at the same path and the container "restarts".  Prometheus'
   HTTP API must show oomtop's kill counter for that pod and container go from nothing to exactly 1 and stay 1
   after the recreation, the OOM-kill alert pending or firing for it, the container's headroom and its
   predicted victim under the container's label; ``promtool check metrics`` must accept a real scrape.

The real-kernel part needs root, the cgroup v1 memory controller, gcc (the hog), a readable /dev/kmsg and
prometheus: it skips elsewhere, and fails instead when OOMTOP_REQUIRE_REAL_KERNEL=1 (CI).  Every process it
starts is killed and every cgroup it made removed also when it fails.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.realkernel import HogProcess, KmsgReader, TestHierarchy, build_hog, collect_kills, start_hog

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "deploy" / "prometheus" / "oomtop-rules.yaml"
RULES_TEST = REPO / "deploy" / "prometheus" / "oomtop-rules.test.yaml"
MIB = 1 << 20
OOM_ALERT = "OomtopContainerOOMKilled"
ADJ_ALERT = "OomtopOomScoreAdjMismatch"
INIT_COMM = "oomprom-init"  # the container's first process: small, survives
VICTIM_COMM = "oomprom-burst"  # the second process: grows past the container's limit and is killed
INTERVAL_S = 0.5  # oomtop serve --interval
SCRAPE_S = 1  # Prometheus' scrape and evaluation interval
T = TypeVar("T")


# ------------------------------------------------------------------------------------------- the rule files


def _promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.prometheus
def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


@pytest.mark.prometheus
def test_promtool_test_rules() -> None:
    """The unit tests of every alert; promtool reads the rule file named in them relative to the test file."""
    result = _promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


# ----------------------------------------------------------------------------------------- the processes


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick; the caller binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0, accept: str | None = None) -> tuple[int, bytes]:
    """(status, body) of a GET on loopback; an HTTP error status is returned, not raised."""
    assert url.startswith("http://127.0.0.1:"), url
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"({path}: {error})"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Service:
    """A subprocess listening on a loopback port, its output in a log file."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def describe(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited with {self.proc.returncode}"
        return f"{self.name} (pid {self.proc.pid}, {state}), last lines of {self.log}:\n{_tail(self.log)}"

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


def start_service(
    name: str, argv_for: Callable[[int], list[str]], ready_path: str, log: Path, cwd: Path, timeout: float = 30.0
) -> Service:
    """Start ``argv_for(port)`` on a free port and wait until ``ready_path`` answers 200; a port taken meanwhile
    by someone else (the process exits at once) is retried with another."""
    problems: list[str] = []
    for _attempt in range(3):
        port = free_port()
        with open(log, "ab") as sink:
            proc = subprocess.Popen(
                argv_for(port), cwd=cwd, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
            )
        service = Service(name, proc, port, log)
        try:
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    if http_get(service.url + ready_path, timeout=1.0)[0] == 200:
                        return service
                time.sleep(0.1)
        except BaseException:
            service.stop()
            raise
        service.stop()
        problems.append(service.describe())
        if "address already in use" not in _tail(log).lower():
            break
    raise AssertionError(f"{name} did not become ready:\n" + "\n".join(problems))


PROMETHEUS_CONFIG = """\
global:
  scrape_interval: {scrape}s
  scrape_timeout: {scrape}s
  evaluation_interval: {scrape}s
rule_files:
  - {rules}
scrape_configs:
  - job_name: oomtop
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


@pytest.fixture
def hog_binary(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_hog(str(tmp_path_factory.mktemp("oomtop-prometheus-hog")))


@pytest.fixture
def tree() -> Iterator[TestHierarchy]:
    with TestHierarchy() as hierarchy:
        yield hierarchy


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Service]:
    """``python -m oomtop serve --interval 0.5`` on a loopback port, killed at the end whatever happens."""

    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", "oomtop", "serve", "--listen", f"127.0.0.1:{port}", "--interval", str(INTERVAL_S)]

    service = start_service("oomtop serve", argv, "/metrics", tmp_path / "serve.log", REPO)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def prometheus(tmp_path: Path, serve: Service) -> Iterator[Service]:
    """Debian's prometheus scraping ``serve`` every second with the rules of deploy/prometheus, its config and
    storage in the test's tmp dir, its web interface on a loopback port; killed at the end whatever happens."""
    home = tmp_path / "prometheus"
    home.mkdir()
    config = home / "prometheus.yml"
    config.write_text(PROMETHEUS_CONFIG.format(scrape=SCRAPE_S, rules=json.dumps(str(RULES)), port=serve.port))
    service = start_service(
        "prometheus",
        lambda port: [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        "/-/ready",
        home / "prometheus.log",
        home,
    )
    try:
        yield service
    finally:
        service.stop()


# ---------------------------------------------------------------------------------------- asking the services


def query(prom: Service, promql: str) -> list[dict[str, Any]]:
    """The instant vector of ``promql`` now: [{"metric": {...}, "value": [t, "v"]}, ...]."""
    status, body = http_get(f"{prom.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    answer = json.loads(body)
    assert status == 200 and answer.get("status") == "success", f"{promql}: HTTP {status}: {body[:500]!r}"
    result = answer["data"]["result"]
    assert isinstance(result, list), answer
    return result


def value_of(prom: Service, promql: str) -> float | None:
    """The one value of a query that yields at most one series (None when it yields none)."""
    result = query(prom, promql)
    assert len(result) <= 1, f"{promql}: more than one series: {result}"
    return float(result[0]["value"][1]) if result else None


def alerts(prom: Service, name: str) -> list[dict[str, Any]]:
    status, body = http_get(f"{prom.url}/api/v1/alerts")
    assert status == 200, body[:500]
    return [a for a in json.loads(body)["data"]["alerts"] if a["labels"].get("alertname") == name]


def wait_for(what: str, probe: Callable[[], T], timeout: float, *services: Service) -> T:
    """Poll ``probe`` until it returns something true (a non-empty list, a non-zero number, True); fail saying
    ``what`` and the services' state after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: not within {timeout}s\n" + "\n".join(service.describe() for service in services)
            )
        time.sleep(0.2)


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(serve: Service) -> list[tuple[str, dict[str, str], float]]:
    """oomtop's /metrics (the Prometheus text format) as (name, labels, value)."""
    status, body = http_get(serve.url + "/metrics")
    assert status == 200, body[:500]
    samples = []
    for line in body.decode().splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(_LABEL.findall(match.group("labels") or ""))
            samples.append((match.group("name"), labels, float(match.group("value"))))
    return samples


def series_of(serve: Service, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    return [
        (have, value)
        for metric, have, value in scrape(serve)
        if metric == name and all(have.get(k) == v for k, v in labels.items())
    ]


# -------------------------------------------------------------------------------------------- the workload


def named_binary(binary: str, comm: str) -> str:
    """The hog under another name (the kernel takes a process's comm from the file it was started by)."""
    assert "/" not in comm and len(comm) <= 15, comm
    path = os.path.join(os.path.dirname(binary), comm)
    if not os.path.lexists(path):
        os.symlink(os.path.basename(binary), path)
    return path


def rmdir_retry(path: str, timeout: float = 5.0) -> None:
    """Remove an emptied cgroup as soon as the kernel lets us (a dead task may take a moment to leave)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return
        except OSError as error:
            if error.errno not in (errno.EBUSY, errno.EAGAIN) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


# ----------------------------------------------------------------------------------------------- the test


@pytest.mark.memcg_v1
@pytest.mark.kmsg
@pytest.mark.prometheus
def test_real_oom_kill_counted_once_and_alerted(
    hog_binary: str, tree: TestHierarchy, serve: Service, prometheus: Service
) -> None:
    services = (serve, prometheus)
    pod = tree.add_pod("burstable")
    container = tree.add_container(pod, 64 * MIB)
    # A BestEffort pod whose container's process holds adj 0, not kubelet's 1000: the adj alert's two sides
    # must join on the labels oomtop really exports.
    besteffort = tree.add_pod("besteffort")
    odd_adj = tree.add_container(besteffort, 64 * MIB)
    init = start_hog(tree, named_binary(hog_binary, INIT_COMM), container, 8, 0)
    start_hog(tree, named_binary(hog_binary, "oomprom-adj"), odd_adj, 4, 0)

    # oomtop names a container with no metadata by the first 12 characters of its cgroup's (runtime's) id
    label = container.rsplit("/", 1)[-1][:12]
    ours = f'pod_uid="{pod.uid}",container="{label}"'
    found = wait_for(
        "oomtop exports the container's headroom",
        lambda: [s for s in series_of(serve, "oomtop_memory_headroom_bytes", pod_uid=pod.uid) if "container" in s[0]],
        15,
        *services,
    )
    assert [labels.get("container") for labels, _ in found] == [label], f"labels oomtop gave the container: {found}"
    assert found[0][0].get("qos") == "Burstable", found
    wait_for(
        "Prometheus has the container's headroom",
        lambda: value_of(prometheus, f"oomtop_memory_headroom_bytes{{{ours}}}"),
        15,
        *services,
    )
    assert value_of(prometheus, f"oomtop_oom_kills_total{{{ours}}}") is None, "a kill counted before any kill"

    # The second, bigger process of the container (adj 500: the kernel's pick) grows past the 64 MiB limit.
    with KmsgReader() as kmsg:
        victim = HogProcess(tree, named_binary(hog_binary, VICTIM_COMM), "hog", 100, container, 500)
        victim.join_and_go()
        try:
            victim.popen.wait(15)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{victim!r} was not OOM-killed within 15 s") from None
        assert victim.killed_by_sigkill(), f"{victim!r} exited with {victim.popen.returncode}, not SIGKILL"
        kills = collect_kills(kmsg, want=1, timeout=5)
        assert [k.comm for k in kills if k.pid == victim.pid] == [VICTIM_COMM], (
            f"the kernel log does not show {victim!r} OOM-killed: {kmsg.lines[-20:]}"
        )
    assert init.alive(), "the container's first process was killed too"

    kills_query = f"sum(oomtop_oom_kills_total{{{ours}}})"
    assert wait_for("Prometheus sees oomtop count the kill", lambda: value_of(prometheus, kills_query), 15, *services)
    assert value_of(prometheus, kills_query) == 1, query(prometheus, f"oomtop_oom_kills_total{{{ours}}}")
    counted = query(prometheus, f"oomtop_oom_kills_total{{{ours}}}")
    assert [s["metric"].get("kind") for s in counted] == ["memcg"], counted

    def oom_alert() -> list[dict[str, Any]]:
        return [
            a
            for a in alerts(prometheus, OOM_ALERT)
            if a["labels"].get("pod_uid") == pod.uid and a["labels"].get("container") == label
        ]

    fired = wait_for(f"{OOM_ALERT} for the container", oom_alert, 10, *services)
    assert len(fired) == 1 and fired[0]["state"] in ("pending", "firing"), fired
    assert fired[0]["labels"].get("severity") == "warning", fired
    assert label in fired[0]["annotations"]["summary"], fired

    # The container's own domain: headroom, the predicted victim (now its first process) and that the rule's
    # operands join (working set + headroom is the effective limit, series for series).
    victims = wait_for(
        "the container's predicted victim in Prometheus",
        lambda: query(prometheus, f'oomtop_predicted_victim_score{{domain="container",{ours}}}'),
        10,
        *services,
    )
    assert len(victims) == 1, victims
    assert victims[0]["metric"].get("victim_container") == label, victims
    assert victims[0]["metric"].get("victim_comm") == INIT_COMM, victims
    headroom = value_of(prometheus, f"oomtop_memory_headroom_bytes{{{ours}}}")
    assert headroom is not None and 0 < headroom < 64 * MIB, headroom
    joined = query(
        prometheus,
        f"oomtop_memory_working_set_bytes{{{ours}}} + oomtop_memory_headroom_bytes{{{ours}}}"
        f" == oomtop_memory_effective_limit_bytes{{{ours}}}",
    )
    assert [float(s["value"][1]) for s in joined] == [64 * MIB], joined

    # A real scrape body passes promtool's lint.
    status, body = http_get(serve.url + "/metrics")
    assert status == 200 and b"oomtop_oom_kills_total{" in body, body[:500]
    lint = _promtool("check", "metrics", stdin=body)
    assert lint.returncode == 0, f"promtool check metrics:\n{lint.stdout}{lint.stderr}"

    # The container restarts: its cgroup is removed (oomtop sees it gone, its count stays) and made again.
    init.kill()
    rmdir_retry(tree.fs(container))
    wait_for(
        "oomtop drops the removed container's gauges",
        lambda: not series_of(serve, "oomtop_memory_headroom_bytes", pod_uid=pod.uid, container=label),
        10,
        *services,
    )
    kept = series_of(serve, "oomtop_oom_kills_total", pod_uid=pod.uid, container=label)
    assert sum(value for _, value in kept) == 1, f"oomtop's count while the container is gone: {kept}"
    wait_for(
        "Prometheus marks the removed container's gauges stale",
        lambda: value_of(prometheus, f"oomtop_memory_headroom_bytes{{{ours}}}") is None,
        10,
        *services,
    )
    assert value_of(prometheus, kills_query) == 1, "the count went with the container"
    tree.mkdir(container, 64 * MIB)
    restarted = start_hog(tree, named_binary(hog_binary, INIT_COMM), container, 8, 0)
    wait_for(
        "Prometheus sees the recreated container",
        lambda: value_of(prometheus, f"oomtop_memory_headroom_bytes{{{ours}}}"),
        10,
        *services,
    )
    for _ in range(4):  # a few scrapes (and eight samples) later
        time.sleep(SCRAPE_S)
        assert value_of(prometheus, kills_query) == 1, query(prometheus, f"oomtop_oom_kills_total{{{ours}}}")
    assert value_of(prometheus, f"max(max_over_time(oomtop_oom_kills_total{{{ours}}}[5m]))") == 1
    assert value_of(prometheus, f"sum(resets(oomtop_oom_kills_total{{{ours}}}[5m]))") == 0
    assert value_of(prometheus, f"sum(changes(oomtop_oom_kills_total{{{ours}}}[5m]))") == 0
    again = oom_alert()
    assert len(again) == 1 and again[0]["state"] in ("pending", "firing"), again
    assert restarted.alive()

    # kubelet's policy for BestEffort (1000) against the process's 0: the adj alert is pending (for: 10m).
    odd_label = odd_adj.rsplit("/", 1)[-1][:12]
    mismatch = wait_for(
        f"{ADJ_ALERT} for the BestEffort container",
        lambda: [
            a
            for a in alerts(prometheus, ADJ_ALERT)
            if a["labels"].get("pod_uid") == besteffort.uid and a["labels"].get("container") == odd_label
        ],
        10,
        *services,
    )
    assert [(a["state"], float(a["value"])) for a in mismatch] == [("pending", 0.0)], mismatch
    assert not [a for a in alerts(prometheus, ADJ_ALERT) if a["labels"].get("pod_uid") == pod.uid]

    # The target stayed healthy all along, and oomtop stops cleanly.
    status, body = http_get(prometheus.url + "/api/v1/targets")
    targets = json.loads(body)["data"]["activeTargets"]
    assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")], targets
    assert serve.stop() == 0, serve.describe()
    assert "Traceback" not in _tail(serve.log, 200), serve.describe()
