"""The Kubernetes manifests in deploy/kubernetes/, offline: valid, and saying what oomtop needs.

1. Every built-in resource (Namespace, DaemonSet, Service) validates against the Kubernetes API schema of the
   oldest and the newest version checked here, in strict mode (an unknown or misspelt field is an error), with
   kubernetes-validate, which ships those schemas: no cluster, no network.
2. The two custom resources (ServiceMonitor, PrometheusRule) are not in that schema, and kubernetes-validate
   says so; they are checked against the fields of the Prometheus Operator's CRDs that they use, transcribed
   below, strict as well.
3. What oomtop relies on: hostPID; the host's / read-only at /host and --host-root naming it; /dev/kmsg readable
   (privileged, and the device mounted) unless --kmsg none; the probe paths answered by ``oomtop serve``'s own
   HTTP app; one port number from --listen to the container port, the Service's targetPort and the
   ServiceMonitor's port; the args parsed by oomtop's own CLI; the Service, ServiceMonitor and pod labels that
   select each other; the PrometheusRule's groups equal to deploy/prometheus/oomtop-rules.yaml's, and the file
   what deploy/kubernetes/make_prometheusrule.py writes.
4. The unprivileged variant commented in daemonset.yaml (``--kmsg none``) is built from its comment and passes
   the same checks.
5. The checks catch what they are for: a misspelt field, hostPID false, a writable /host, a port that differs.
"""

from __future__ import annotations

import copy
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from oomtop.cli import build_parser, kmsg_path
from oomtop.serve.command import listen_address
from oomtop.serve.exporter import Exporter
from oomtop.serve.http import metrics_app

REPO = Path(__file__).resolve().parent.parent
KUBE = REPO / "deploy" / "kubernetes"
DAEMONSET = KUBE / "daemonset.yaml"
SERVICEMONITOR = KUBE / "servicemonitor.yaml"
PROMETHEUSRULE = KUBE / "prometheusrule.yaml"
RULES = REPO / "deploy" / "prometheus" / "oomtop-rules.yaml"
# The Kubernetes versions whose API schemas every built-in resource must pass: the oldest supported here and the
# newest kubernetes-validate 1.37.0 ships.
K8S_VERSIONS = ("1.30.0", "1.37.0")
OPERATOR_GROUP = "monitoring.coreos.com/"
VARIANT_BEGIN = "# --- the --kmsg none variant (begin)"
VARIANT_END = "# --- the --kmsg none variant (end)"

Doc = dict[str, Any]


# ------------------------------------------------------------------------------------------------ loading


def load(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def manifests() -> dict[str, list[Doc]]:
    """Every manifest file in deploy/kubernetes/ (what `kubectl apply -f deploy/kubernetes/` would read)."""
    return {path.name: load(path) for path in sorted(KUBE.glob("*.yaml"))}


def one_of(docs: list[Doc], kind: str) -> Doc:
    found = [doc for doc in docs if doc.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container_of(daemonset: Doc) -> Doc:
    containers = daemonset["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container: oomtop"
    return containers[0]


# ------------------------------------------------------------------------------- 1. the Kubernetes schema


def test_every_manifest_is_a_known_kind() -> None:
    """Nothing is skipped by accident: every document is one of the kinds checked below."""
    kinds = sorted((name, doc["apiVersion"], doc["kind"]) for name, docs in manifests().items() for doc in docs)
    assert kinds == [
        ("daemonset.yaml", "apps/v1", "DaemonSet"),
        ("daemonset.yaml", "v1", "Namespace"),
        ("daemonset.yaml", "v1", "ResourceQuota"),
        ("daemonset.yaml", "v1", "Service"),
        ("prometheusrule.yaml", "monitoring.coreos.com/v1", "PrometheusRule"),
        ("servicemonitor.yaml", "monitoring.coreos.com/v1", "ServiceMonitor"),
    ]


def k8s_errors(doc: Doc, version: str) -> str | None:
    """None when ``doc`` passes the strict schema of ``version``; else where and why it does not."""
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path) or "(top)"
        return f"{doc['kind']}/{doc['metadata'].get('name')} against {error.version}: {where}: {error.message}"
    return None


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_resources_validate_against_the_kubernetes_schema(version: str) -> None:
    builtin = [doc for docs in manifests().values() for doc in docs if not doc["apiVersion"].startswith(OPERATOR_GROUP)]
    assert builtin
    errors = [error for doc in builtin if (error := k8s_errors(doc, version)) is not None]
    assert not errors, "\n".join(errors)


# ------------------------------------------------------------------------------- 2. the custom resources

# Transcribed from the Prometheus Operator's CRDs (example/prometheus-operator-crd/monitoring.coreos.com_*.yaml,
# operator 0.93.0): the fields these manifests use, with the CRDs' types, enums and patterns. Strict (no other
# field), so a misspelt field fails here as kubectl's server-side field validation would fail it; a field the
# CRD has that is not transcribed yet fails too: add it from the CRD.
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "additionalProperties": False,
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": STRING_MAP},
}
RELABEL_ACTIONS = [
    "replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep", "lowercase", "uppercase",
    "keepequal", "dropequal",
]  # fmt: skip
SERVICEMONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "required": ["endpoints", "selector"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": STRING_MAP},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "interval": {"type": "string", "pattern": DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": DURATION},
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "action": {
                                            "enum": RELABEL_ACTIONS + [a[0].upper() + a[1:] for a in RELABEL_ACTIONS]
                                        },
                                        "sourceLabels": {"type": "array", "items": {"type": "string"}},
                                        "separator": {"type": "string"},
                                        "targetLabel": {"type": "string"},
                                        "regex": {"type": "string"},
                                        "replacement": {"type": "string"},
                                        "modulus": {"type": "integer", "minimum": 0},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
PROMETHEUSRULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string", "pattern": DURATION},
                            "limit": {"type": "integer"},
                            "query_offset": {"type": "string", "pattern": DURATION},
                            "labels": STRING_MAP,
                            "partial_response_strategy": {"type": "string", "pattern": "^(?i)(abort|warn)?$"},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "record": {"type": "string"},
                                        "expr": {"type": ["integer", "string"]},
                                        "for": {"type": "string", "pattern": DURATION},
                                        "keep_firing_for": {"type": "string", "minLength": 1, "pattern": DURATION},
                                        "labels": STRING_MAP,
                                        "annotations": STRING_MAP,
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}
CRD_SCHEMAS = {"ServiceMonitor": SERVICEMONITOR_SCHEMA, "PrometheusRule": PROMETHEUSRULE_SCHEMA}


def crd_errors(doc: Doc) -> list[str]:
    validator = jsonschema.Draft202012Validator(CRD_SCHEMAS[doc["kind"]])
    return [f"{'.'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize(("path", "kind"), [(SERVICEMONITOR, "ServiceMonitor"), (PROMETHEUSRULE, "PrometheusRule")])
def test_custom_resources_validate_against_the_operators_crd_fields(path: Path, kind: str) -> None:
    doc = one_of(load(path), kind)
    # The reason they are checked here and not in the Kubernetes schema: kubernetes-validate has none for them.
    with pytest.raises(SchemaNotFoundError):
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)
    errors = crd_errors(doc)
    assert not errors, "\n".join(errors)


# --------------------------------------------------------------------------------- 3. what oomtop relies on


def parse_args(container: Doc) -> Any:
    """The container's command line through oomtop's own parser (an unknown flag exits: a failure here)."""
    assert "command" not in container, "the image's entrypoint is oomtop: args only"
    try:
        return build_parser().parse_args([str(arg) for arg in container["args"]])
    except SystemExit as exit_:
        raise AssertionError(f"oomtop's CLI rejects the args {container['args']} (exit {exit_.code})") from None


def http_status(path: str) -> str:
    """The status ``oomtop serve``'s HTTP app answers for GET ``path`` (with a fresh sample published)."""
    exporter = Exporter(0.5)
    exporter.publish([], time.time())
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        statuses.append(status)
        return lambda data: None

    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "HTTP_ACCEPT": ""}
    b"".join(metrics_app(exporter)(environ, start_response))
    return statuses[0]


def resolve_port(container: Doc, port: int | str) -> int:
    """A probe's or a Service's target port (a number, or the name of one of the container's ports)."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert named, f"no container port named {port!r}"
    return int(named[0])


def mount_of(container: Doc, pod: Doc, path: str) -> tuple[Doc, Doc]:
    """The volumeMount at ``path`` and the volume it mounts."""
    mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == path]
    assert len(mounts) == 1, f"nothing mounted at {path}"
    volumes = [v for v in pod.get("volumes", []) if v["name"] == mounts[0]["name"]]
    assert len(volumes) == 1, f"no volume named {mounts[0]['name']}"
    return mounts[0], volumes[0]


def check_daemonset(daemonset: Doc) -> None:
    """What oomtop needs from its pod; an AssertionError says what is missing."""
    pod = daemonset["spec"]["template"]["spec"]
    container = container_of(daemonset)
    args = parse_args(container)
    security = container.get("securityContext", {})
    assert args.command == "serve", "the DaemonSet runs oomtop serve"

    # The node's pid namespace: pids in the kernel log and cgroup.procs are the pids oomtop reads in /proc.
    assert pod.get("hostPID") is True, "hostPID must be true (else the node's processes look absent)"
    assert pod.get("automountServiceAccountToken") is False, "oomtop needs no API token"
    assert pod.get("priorityClassName") == "system-node-critical"
    assert {"operator": "Exists"} in pod.get("tolerations", []), "a toleration of every taint"

    # The host's / read-only at /host, and --host-root naming that place.
    assert args.host_root is not None, "--host-root: cgroupfs, procfs and metadata are the host's"
    mount, volume = mount_of(container, pod, args.host_root.rstrip("/") or "/")
    assert volume.get("hostPath", {}).get("path") == "/", f"{args.host_root} must be the host's /"
    assert mount.get("readOnly") is True, f"the host's / must be mounted read-only at {args.host_root}"
    assert mount.get("mountPropagation") == "HostToContainer"
    assert all(m.get("readOnly") is True for m in container.get("volumeMounts", [])), "oomtop writes no volume"
    assert security.get("readOnlyRootFilesystem") is True, "oomtop writes nothing in its own filesystem either"

    # The kernel log: readable only by a privileged container (the device cgroup), unless --kmsg none.
    kmsg = kmsg_path(args)
    if kmsg is not None:
        assert security.get("privileged") is True, f"reading {kmsg} needs privileged (or pass --kmsg none)"
        _, device = mount_of(container, pod, kmsg)
        assert device.get("hostPath", {}).get("type") == "CharDevice"
    else:
        assert not security.get("privileged"), "--kmsg none needs no privilege: do not ask for it"
        assert not any(m["mountPath"] == "/dev/kmsg" for m in container.get("volumeMounts", []))

    # One port: --listen, the container port named "metrics", every probe.
    host, listen_port = listen_address(args.listen)
    assert host in ("0.0.0.0", "::"), f"--listen {host}: a scraper from another pod cannot reach it"
    assert resolve_port(container, "metrics") == listen_port, "the container port 'metrics' is not --listen's port"
    for name in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(name)
        assert probe is not None, f"no {name}"
        get = probe["httpGet"]
        assert resolve_port(container, get["port"]) == listen_port, f"{name} is not on --listen's port"
        assert http_status(get["path"]).startswith("200"), f"{name}: oomtop serve does not answer {get['path']}"


def check_service(service: Doc, daemonset: Doc) -> None:
    container = container_of(daemonset)
    labels = daemonset["spec"]["template"]["metadata"]["labels"]
    spec = service["spec"]
    assert service["metadata"]["namespace"] == daemonset["metadata"]["namespace"]
    assert spec["selector"].items() <= labels.items(), "the Service does not select the oomtop pods"
    (port,) = spec["ports"]
    assert port["name"] == "metrics"
    _, listen_port = listen_address(parse_args(container).listen)
    assert resolve_port(container, port.get("targetPort", port["port"])) == listen_port, "targetPort is not --listen's"


def check_servicemonitor(monitor: Doc, service: Doc) -> None:
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items(), "selects no Service"
    assert service["metadata"]["namespace"] in spec["namespaceSelector"]["matchNames"]
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    for endpoint in spec["endpoints"]:
        assert endpoint["port"] in service_ports, f"the Service has no port named {endpoint['port']!r}"
        path = endpoint.get("path", "/metrics")
        assert http_status(path).startswith("200"), f"oomtop serve does not answer {path}"
        # The target labels that would collide with oomtop's own namespace, pod and container are dropped.
        dropped = [r["regex"] for r in endpoint.get("relabelings", []) if r.get("action", "").lower() == "labeldrop"]
        assert "(namespace|pod|container)" in dropped, "oomtop's namespace/pod/container would become exported_*"


def test_daemonset_gives_oomtop_what_it_needs() -> None:
    check_daemonset(one_of(load(DAEMONSET), "DaemonSet"))


def test_service_selects_the_pods_on_the_listen_port() -> None:
    docs = load(DAEMONSET)
    check_service(one_of(docs, "Service"), one_of(docs, "DaemonSet"))


def test_namespaced_objects_are_in_the_namespace_it_creates() -> None:
    docs = [doc for docs in manifests().values() for doc in docs]
    namespace = one_of(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"], f"{doc['kind']} elsewhere"
    # A cluster may admit system-node-critical pods only in namespaces with a quota for that class (GKE does).
    priority = one_of(docs, "DaemonSet")["spec"]["template"]["spec"]["priorityClassName"]
    (scope,) = one_of(docs, "ResourceQuota")["spec"]["scopeSelector"]["matchExpressions"]
    assert (scope["scopeName"], scope["operator"]) == ("PriorityClass", "In") and priority in scope["values"]


def test_servicemonitor_scrapes_the_service() -> None:
    check_servicemonitor(one_of(load(SERVICEMONITOR), "ServiceMonitor"), one_of(load(DAEMONSET), "Service"))


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_prometheusrule", KUBE / "make_prometheusrule.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prometheusrule_holds_the_rules_file_groups() -> None:
    rule = one_of(load(PROMETHEUSRULE), "PrometheusRule")
    (rules,) = load(RULES)
    assert rules.keys() == {"groups"}, "the rules file has more than groups: the PrometheusRule would lose it"
    assert rule["spec"]["groups"] == rules["groups"], (
        "deploy/kubernetes/prometheusrule.yaml differs from deploy/prometheus/oomtop-rules.yaml: "
        "run python3 deploy/kubernetes/make_prometheusrule.py"
    )


def test_prometheusrule_is_what_the_generator_writes() -> None:
    generated = load_generator().render(RULES.read_text(encoding="utf-8"))
    assert PROMETHEUSRULE.read_text(encoding="utf-8") == generated, (
        "deploy/kubernetes/prometheusrule.yaml was edited by hand or is stale: "
        "run python3 deploy/kubernetes/make_prometheusrule.py"
    )


# ------------------------------------------------------------------------ 4. the unprivileged --kmsg none variant


def kmsg_none_variant() -> Doc:
    """The DaemonSet as the comment in daemonset.yaml says to change it for --kmsg none."""
    lines = DAEMONSET.read_text(encoding="utf-8").splitlines()
    begin = next(i for i, line in enumerate(lines) if line.strip().startswith(VARIANT_BEGIN))
    end = next(i for i, line in enumerate(lines) if line.strip().startswith(VARIANT_END))
    block = [line.strip() for line in lines[begin + 1 : end]]
    start = block.index("# securityContext:")
    assert all(line.startswith("# ") for line in block[start:])
    replacement = yaml.safe_load("\n".join(line[2:] for line in block[start:]))
    daemonset = copy.deepcopy(one_of(load(DAEMONSET), "DaemonSet"))
    pod = daemonset["spec"]["template"]["spec"]
    container = container_of(daemonset)
    container["securityContext"] = replacement["securityContext"]
    container["args"] = [*container["args"], "--kmsg", "none"]
    kmsg_volumes = {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/dev/kmsg"}
    assert kmsg_volumes, "the kmsg volumeMount the variant's comment says to delete"
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] not in kmsg_volumes]
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] not in kmsg_volumes]
    return daemonset


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_kmsg_none_variant_validates(version: str) -> None:
    error = k8s_errors(kmsg_none_variant(), version)
    assert error is None, error


def test_the_kmsg_none_variant_gives_oomtop_what_it_needs_without_privilege() -> None:
    variant = kmsg_none_variant()
    check_daemonset(variant)
    security = container_of(variant)["securityContext"]
    assert security["capabilities"]["drop"] == ["ALL"] and security["allowPrivilegeEscalation"] is False


# ------------------------------------------------------------------------------- 5. the checks catch breakage


def edited(edit: Callable[[Doc, Doc], None]) -> Doc:
    daemonset = copy.deepcopy(one_of(load(DAEMONSET), "DaemonSet"))
    edit(daemonset["spec"]["template"]["spec"], container_of(daemonset))
    return daemonset


def _set(target: str, key: str, value: Any) -> Callable[[Doc, Doc], None]:
    def edit(pod: Doc, container: Doc) -> None:
        {"pod": pod, "container": container}[target][key] = value

    return edit


def _misspelt(pod: Doc, container: Doc) -> None:
    pod["hostPid"] = pod.pop("hostPID")


def _writable_host(pod: Doc, container: Doc) -> None:
    container["volumeMounts"][0]["readOnly"] = False


def _other_port(pod: Doc, container: Doc) -> None:
    container["ports"][0]["containerPort"] = 9100


def _unknown_flag(pod: Doc, container: Doc) -> None:
    container["args"] = [*container["args"], "--kmsg-none"]


def _no_host_root(pod: Doc, container: Doc) -> None:
    container["args"] = [arg for arg in container["args"] if arg not in ("--host-root", "/host")]


def _unprivileged_with_kmsg(pod: Doc, container: Doc) -> None:
    container["securityContext"]["privileged"] = False


def _probe_elsewhere(pod: Doc, container: Doc) -> None:
    container["livenessProbe"]["httpGet"]["path"] = "/health"


@pytest.mark.parametrize(
    ("edit", "schema_error", "check_error"),
    [
        (_misspelt, "'hostPid' was unexpected", "hostPID must be true"),
        (_set("pod", "hostPID", False), None, "hostPID must be true"),
        (_set("pod", "terminationGracePeriodSeconds", "30s"), "'30s' is not of type", None),
        (_writable_host, None, "read-only"),
        (_other_port, None, "not --listen's port"),
        (_unknown_flag, None, "oomtop's CLI rejects"),
        (_no_host_root, None, "--host-root: cgroupfs"),
        (_unprivileged_with_kmsg, None, "needs privileged"),
        (_probe_elsewhere, None, "does not answer /health"),
    ],
)
def test_a_broken_daemonset_fails(
    edit: Callable[[Doc, Doc], None], schema_error: str | None, check_error: str | None
) -> None:
    daemonset = edited(edit)
    found = k8s_errors(daemonset, K8S_VERSIONS[-1])
    if schema_error is None:
        assert found is None, found
    else:
        assert found is not None and schema_error in found, found
    if check_error is None:
        check_daemonset(daemonset)
    else:
        with pytest.raises(AssertionError, match=check_error):
            check_daemonset(daemonset)


def test_a_misspelt_servicemonitor_field_fails() -> None:
    monitor = copy.deepcopy(one_of(load(SERVICEMONITOR), "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["relabelling"] = monitor["spec"]["endpoints"][0].pop("relabelings")
    assert any("'relabelling' was unexpected" in error for error in crd_errors(monitor))
