"""Samples and events as compact JSON values, with the field names written once in the file's header.

Each record type is a list of values in the order of its schema (the dataclass fields).  The header carries the
schemas, so a newer oomtop that adds a field reads an old file (the missing field takes its default) and an older
oomtop reading a newer minor revision ignores fields it does not know.  Enums are stored by value.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

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
    Pressure,
    QosClass,
    Task,
)

# What a Cgroup record holds; identity travels separately (it rarely changes and is large).
CGROUP_FIELDS = tuple(f.name for f in dataclasses.fields(Cgroup) if f.name != "identity")
TASK_FIELDS = tuple(f.name for f in dataclasses.fields(Task))
NODE_FIELDS = tuple(f.name for f in dataclasses.fields(NodeInfo))
PRESSURE_FIELDS = tuple(f.name for f in dataclasses.fields(Pressure))


def schemas() -> dict[str, list[str]]:
    """The field order of every record type, for the header."""
    return {
        "cgroup": list(CGROUP_FIELDS),
        "task": list(TASK_FIELDS),
        "node": list(NODE_FIELDS),
        "pressure": list(PRESSURE_FIELDS),
    }


def encode_cgroup(cgroup: Cgroup) -> list[Any]:
    values: list[Any] = []
    for name in CGROUP_FIELDS:
        value = getattr(cgroup, name)
        if name == "pressure" and value is not None:
            value = [getattr(value, f) for f in PRESSURE_FIELDS]
        elif name == "pids":
            value = list(value)
        values.append(value)
    return values


def encode_task(task: Task) -> list[Any]:
    return [getattr(task, name) for name in TASK_FIELDS]


def encode_node(node: NodeInfo) -> list[Any]:
    return [getattr(node, name) for name in NODE_FIELDS]


def encode_identity(identity: Identity) -> list[Any]:
    pod = identity.pod
    container = identity.container
    return [
        identity.kind.value,
        identity.qos.value if identity.qos else None,
        [pod.uid, pod.qos.value, pod.name, pod.namespace] if pod else None,
        [container.id, container.runtime, container.name, container.is_sandbox] if container else None,
        identity.label,
    ]


class Decoder:
    """Turns records back into model objects using the schemas the file was written with."""

    def __init__(self, file_schemas: dict[str, list[str]]) -> None:
        self._cgroup = self._mapping(file_schemas.get("cgroup", list(CGROUP_FIELDS)), CGROUP_FIELDS)
        self._task = self._mapping(file_schemas.get("task", list(TASK_FIELDS)), TASK_FIELDS)
        self._node = self._mapping(file_schemas.get("node", list(NODE_FIELDS)), NODE_FIELDS)
        self._pressure = self._mapping(file_schemas.get("pressure", list(PRESSURE_FIELDS)), PRESSURE_FIELDS)

    @staticmethod
    def _mapping(written: list[str], current: tuple[str, ...]) -> list[tuple[str, int]]:
        """(field name, index in the written record) for the fields both versions know."""
        positions = {name: index for index, name in enumerate(written)}
        return [(name, positions[name]) for name in current if name in positions]

    @staticmethod
    def _fields(values: list[Any], mapping: list[tuple[str, int]]) -> dict[str, Any]:
        return {name: values[index] for name, index in mapping if index < len(values)}

    def cgroup(self, values: list[Any], identity: Identity) -> Cgroup:
        fields = self._fields(values, self._cgroup)
        pressure = fields.get("pressure")
        if pressure is not None:
            fields["pressure"] = Pressure(**self._fields(pressure, self._pressure))
        fields["pids"] = tuple(fields.get("pids") or ())
        return _build(Cgroup, fields, identity=identity)

    def task(self, values: list[Any]) -> Task:
        return _build(Task, self._fields(values, self._task))

    def node(self, values: list[Any]) -> NodeInfo:
        return _build(NodeInfo, self._fields(values, self._node))

    @staticmethod
    def identity(values: list[Any]) -> Identity:
        kind, qos, pod, container, label = (list(values) + [None] * 5)[:5]
        return Identity(
            kind=CgroupKind(kind),
            qos=QosClass(qos) if qos else None,
            pod=PodRef(uid=pod[0], qos=QosClass(pod[1]), name=pod[2], namespace=pod[3]) if pod else None,
            container=(
                ContainerRef(id=container[0], runtime=container[1], name=container[2], is_sandbox=bool(container[3]))
                if container
                else None
            ),
            label=label or "",
        )


_T = TypeVar("_T")

_MISSING_FILLS: dict[type, tuple[tuple[str, Any, Any], ...]] = {}


def _fills(cls: type) -> tuple[tuple[str, Any, Any], ...]:
    """(name, default, factory) of every field of ``cls``, looked up once per class (``fields()`` is slow)."""
    fills = _MISSING_FILLS.get(cls)
    if fills is None:
        fills = _MISSING_FILLS[cls] = tuple((f.name, f.default, f.default_factory) for f in dataclasses.fields(cls))
    return fills


def _build(cls: type[_T], fields: dict[str, Any], **extra: Any) -> _T:
    """Construct a dataclass, giving fields the file lacks their default (or a neutral value)."""
    values = {**fields, **extra} if extra else fields
    fills = _fills(cls)
    if len(values) < len(fills):  # a file written before some fields existed
        for name, default, factory in fills:
            if name in values:
                continue
            if default is not dataclasses.MISSING:
                values[name] = default
            elif factory is not dataclasses.MISSING:
                values[name] = factory()
            else:
                values[name] = None
    return cls(**values)


# ------------------------------------------------------------------------------------------------ events


def encode_event(event: OomEvent) -> dict[str, Any]:
    """An OomEvent as a JSON object keyed by field name (events are rare: clarity over size)."""
    result: dict[str, Any] = {}
    for field in dataclasses.fields(OomEvent):
        value = getattr(event, field.name)
        if field.name in ("victim",):
            value = dataclasses.asdict(value)
        elif field.name == "killed":
            value = [dataclasses.asdict(task) for task in value]
        elif field.name == "candidates":
            value = [dataclasses.asdict(candidate) for candidate in value]
        elif field.name == "pod" and value is not None:
            value = {"uid": value.uid, "qos": value.qos.value, "name": value.name, "namespace": value.namespace}
        elif field.name == "container" and value is not None:
            value = dataclasses.asdict(value)
        elif isinstance(value, tuple):
            value = list(value)
        result[field.name] = value
    return result


def decode_event(data: dict[str, Any]) -> OomEvent:
    known = {field.name for field in dataclasses.fields(OomEvent)}
    fields = {key: value for key, value in data.items() if key in known}
    fields["victim"] = _build(KilledTask, _known(KilledTask, fields.get("victim") or {}))
    fields["killed"] = tuple(_build(KilledTask, _known(KilledTask, t)) for t in fields.get("killed") or ())
    fields["candidates"] = tuple(
        _build(KernelCandidate, _known(KernelCandidate, c)) for c in fields.get("candidates") or ()
    )
    pod = fields.get("pod")
    if pod:
        fields["pod"] = PodRef(
            uid=pod["uid"], qos=QosClass(pod["qos"]), name=pod.get("name"), namespace=pod.get("namespace")
        )
    container = fields.get("container")
    if container:
        fields["container"] = _build(ContainerRef, _known(ContainerRef, container))
    fields["source"] = tuple(fields.get("source") or ())
    return _build(OomEvent, fields)


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {field.name for field in dataclasses.fields(cls)}
    return {key: value for key, value in data.items() if key in names}
