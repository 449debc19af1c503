"""Samples and events as compact JSON values, with the field names written once in the file's header.

Each record type is a list of values in the order of its schema (the dataclass fields).  The header carries the
schemas, so a newer oomtop that adds a field reads an old file (the missing field takes its default) and an older
oomtop reading a newer minor revision ignores fields it does not know.  Enums are stored by value.

A recording is untrusted input (it comes attached to bug reports): a frame's checksum only says the bytes are the
ones that were written, not that a well-meaning oomtop wrote them.  So every value is checked as it is decoded,
against rules derived once per model class from its dataclass fields and type hints (``int`` is a non-negative
64-bit count unless :data:`INT_RANGES` says otherwise, ``float`` a time or a share, ``str`` bounded text or, for the
fields in :data:`PATH_FIELDS`, a sane cgroup path, enums and ``Literal`` by their values, ``X | None``, tuples,
nested dataclasses).  A value that breaks a rule raises :class:`BadRecord`, which names the field and the kind of
value found (never the value itself: it is untrusted text, and the message ends up on a terminal).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from enum import Enum
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
    Sample,
    Task,
)


class BadRecord(ValueError):
    """A record (or a header schema) whose frame was intact but whose contents oomtop never writes."""


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


# ------------------------------------------------------------------------------------------- value rules

#: A check returns None for a value it accepts, else what is wrong with it (a short phrase, no value quoted).
Check = Callable[[Any], str | None]

U64_MAX = 2**64 - 1
#: Times (and every other float: PSI shares, seconds since boot) stay below 9999-12-29, so that every view can
#: format them as a date in any time zone (``datetime`` stops at the year 9999).
MAX_TIME_S = 253_402_128_000.0
MAX_PATH = 4096  # PATH_MAX: a longer cgroup path cannot exist
MAX_TEXT = 1 << 20  # command lines are cut well below this by the collector

#: Integer fields whose range is not "a 64-bit count": by field name, wherever the name appears in the model.
INT_RANGES: dict[str, tuple[int, int]] = {
    "oom_score_adj": (-1000, 1000),
    "invoker_oom_score_adj": (-1000, 1000),
    "logged_score": (-(2**63), 2**63 - 1),
    "page_size": (1, 1 << 30),  # divides every byte count into pages
    "clock_ticks": (1, 1 << 20),
    "cgroup_version": (0, 2),
}

#: String fields that hold a cgroup path ("same form as Cgroup.path", as the model says of each).
PATH_FIELDS = frozenset({"path", "cgroup", "oom_cgroup", "task_cgroup", "oom_group_path", "detected_in"})


def is_cgroup_path(value: Any) -> bool:
    """ "/" or "/a/b": absolute, no empty, "." or ".." element, no trailing slash, no NUL, at most PATH_MAX."""
    if type(value) is not str:
        return False
    if value == "/":
        return True
    return (
        value[:1] == "/"
        and value[-1] != "/"
        and len(value) <= MAX_PATH
        and "//" not in value
        and "/./" not in value
        and "/../" not in value
        and "\0" not in value
        and not value.endswith(("/.", "/.."))
    )


def kind_of(value: Any) -> str:
    """The JSON kind of a value, for messages (never the value: it is untrusted)."""
    if value is None:
        return "null"
    if type(value) is bool:
        return "a boolean"
    if type(value) is int:
        return "an integer"
    if type(value) is float:
        return "a number" if math.isfinite(value) else "a non-finite number"
    if type(value) is str:
        return "a string"
    if type(value) is list:
        return "a list"
    if type(value) is dict:
        return "an object"
    return type(value).__name__


def _int_check(lo: int, hi: int) -> Check:
    expected = f"not an integer from {lo} to {hi}"

    def check(value: Any) -> str | None:
        return None if type(value) is int and lo <= value <= hi else expected

    return check


def _float_check(value: Any) -> str | None:
    # NaN fails both comparisons; an integer is a number too (JSON does not tell 5 from 5.0 apart everywhere).
    if (type(value) is float or type(value) is int) and 0.0 <= value <= MAX_TIME_S:
        return None
    return f"not a number from 0 to {MAX_TIME_S:.0f}"


def _bool_check(value: Any) -> str | None:
    return None if type(value) is bool else "not true or false"


def _text_check(value: Any) -> str | None:
    return None if type(value) is str and len(value) <= MAX_TEXT else f"not a string of at most {MAX_TEXT} characters"


def _path_check(value: Any) -> str | None:
    return None if is_cgroup_path(value) else "not a cgroup path"


def _optional(inner: Check) -> Check:
    def check(value: Any) -> str | None:
        if value is None:
            return None
        problem = inner(value)
        return None if problem is None else f"{problem} (or null)"

    return check


def _one_of(allowed: frozenset[str]) -> Check:
    expected = "not one of " + ", ".join(sorted(allowed))

    def check(value: Any) -> str | None:
        return None if type(value) is str and value in allowed else expected

    return check


def _list_of(item: Check) -> Check:
    def check(value: Any) -> str | None:
        if type(value) is not list:
            return "not a list"
        for index, element in enumerate(value):
            problem = item(element)
            if problem is not None:
                return f"item {index}: {kind_of(element)}, {problem}"
        return None

    return check


def value_check(annotation: Any, name: str, nested: Callable[[type], Check]) -> Check:
    """The check for one field's values, from its type hint (``nested`` checks a dataclass-typed value, which is
    a list in sample records and an object in events)."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in arguments if option is not type(None)]
        if len(options) != 1 or len(options) == len(arguments):
            raise TypeError(f"no value rule for the field {name}: {annotation}")
        return _optional(value_check(options[0], name, nested))
    if origin is typing.Literal:
        return _one_of(frozenset(str(argument) for argument in arguments))
    if origin is tuple and len(arguments) == 2 and arguments[1] is Ellipsis:
        return _list_of(value_check(arguments[0], name, nested))
    if annotation is bool:
        return _bool_check
    if annotation is int:
        return _int_check(*INT_RANGES.get(name, (0, U64_MAX)))
    if annotation is float:
        return _float_check
    if annotation is str:
        return _path_check if name in PATH_FIELDS else _text_check
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return _one_of(frozenset(str(member.value) for member in annotation))
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return nested(annotation)
    raise TypeError(f"no value rule for the field {name}: {annotation}")  # a new field type needs a rule here


def fast_expression(hint: Any, name: str, namespace: dict[str, Any]) -> str | None:
    """The check of a scalar field as one Python expression of ``{v}`` (None: use the field's check function).

    The per-field checks are closures; a keyframe holds some 20,000 values, and a delta of a busy node thousands,
    so the common fields are checked by compiled expressions instead, which saves a call per value (measured:
    decoding a segment cost 40 % more with the closures alone, see bench_seek).  Derived from the same type
    hints and tables as the closures; the closures still say what is wrong when an expression says "no"."""
    origin = typing.get_origin(hint)
    arguments = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in arguments if option is not type(None)]
        inner = fast_expression(options[0], name, namespace) if len(options) == 1 else None
        return None if inner is None else f"({{v}} is None or {inner})"
    if hint is bool:
        return "(type({v}) is bool)"
    if hint is int:
        low, high = INT_RANGES.get(name, (0, U64_MAX))
        return f"(type({{v}}) is int and {low} <= {{v}} <= {high})"
    if hint is float:
        return f"((type({{v}}) is float or type({{v}}) is int) and 0.0 <= {{v}} <= {MAX_TIME_S!r})"
    if hint is str:
        return "is_cgroup_path({v})" if name in PATH_FIELDS else f"(type({{v}}) is str and len({{v}}) <= {MAX_TEXT})"
    if isinstance(hint, type) and issubclass(hint, Enum):
        allowed = f"allowed_{len(namespace)}"
        namespace[allowed] = frozenset(str(member.value) for member in hint)
        return f"(type({{v}}) is str and {{v}} in {allowed})"
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class FieldRule:
    """What one field of a model class accepts."""

    owner: str
    name: str
    check: Check
    required: bool  # no default: a record without it cannot be made
    hint: Any = None  # the type hint the check was derived from (for the compiled fast check)

    def problem(self, value: Any) -> str | None:
        """None, or the one-line reason (field and kind of value) the value is refused."""
        found = self.check(value)
        return None if found is None else f"{self.owner}.{self.name}: {kind_of(value)}, {found}"


_RULES: dict[tuple[type, str], tuple[FieldRule, ...]] = {}


def field_rules(cls: type, encoding: str = "list") -> tuple[FieldRule, ...]:
    """The rules of every field of ``cls`` (in field order), derived once per class from its type hints.

    ``encoding`` is how nested dataclasses are written: "list" (sample records, identities) or "object" (events).
    """
    key = (cls, encoding)
    rules = _RULES.get(key)
    if rules is not None:
        return rules
    hints = typing.get_type_hints(cls)
    nested = list_check if encoding == "list" else object_check
    built = []
    for field in dataclasses.fields(cls):
        if field.name == "identity":
            continue  # a cgroup's identity travels on its own (see Decoder.identity)
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        check = value_check(hints[field.name], field.name, nested)
        built.append(FieldRule(cls.__name__, field.name, check, required, hints[field.name]))
    rules = _RULES[key] = tuple(built)
    return rules


def list_check(cls: type) -> Check:
    """A dataclass written as a list in field order (identities, pods and containers of identities); trailing
    fields with a default may be missing (an older writer), extra ones are a newer writer's and are ignored."""
    rules = field_rules(cls, "list")
    least = sum(rule.required for rule in rules)
    complete = compiled_check(rules)  # the usual case, every field there: one compiled expression

    def check(value: Any) -> str | None:
        if complete(value):
            return None
        if type(value) is not list or len(value) < least:
            return f"not a {cls.__name__} record"
        for rule, element in zip(rules, value, strict=False):
            problem = rule.problem(element)
            if problem is not None:
                return problem
        return None

    return check


def compiled_check(
    rules: typing.Sequence[FieldRule | None], overridden: frozenset[str] = frozenset()
) -> Callable[[Any], bool]:
    """Whether a value is a list of exactly these fields, all valid: one compiled expression (see fast_expression;
    fields without one, and ``overridden`` ones, call their check).  The source is made of this module's constants
    and positions only, never of anything read from a file."""
    namespace: dict[str, Any] = {"is_cgroup_path": is_cgroup_path}
    terms = [f"type(values) is list and len(values) == {len(rules)}"]
    for index, rule in enumerate(rules):
        if rule is None:
            continue
        expression = None if rule.name in overridden else fast_expression(rule.hint, rule.name, namespace)
        if expression is None:
            namespace[f"check_{index}"] = rule.check
            expression = f"check_{index}({{v}}) is None"
        terms.append(expression.replace("{v}", f"values[{index}]"))
    compiled: Callable[[Any], bool] = eval(f"lambda values: {' and '.join(terms)}", namespace)
    return compiled


def object_check(cls: type) -> Check:
    """A dataclass written as an object keyed by field name (events): every field without a default is there,
    unknown keys (a newer writer's) are ignored."""
    rules = {rule.name: rule for rule in field_rules(cls, "object")}
    required = [rule.name for rule in rules.values() if rule.required]

    def check(value: Any) -> str | None:
        if type(value) is not dict:
            return f"not a {cls.__name__} object"
        for name in required:
            if name not in value:
                return f"{cls.__name__}.{name} is missing"
        for name, element in value.items():
            rule = rules.get(name)
            if rule is not None:
                problem = rule.problem(element)
                if problem is not None:
                    return problem
        return None

    return check


def _refuse(problem: str | None) -> None:
    if problem is not None:
        raise BadRecord(problem)


_SAMPLE_RULES = {rule.name: rule for rule in field_rules(Sample)}
_IDENTITY_CHECK = list_check(Identity)
_EVENT_CHECK = object_check(OomEvent)


def check_stamp(time_s: Any, monotonic: Any, seq: Any) -> None:
    """A sample record's time, monotonic time and sequence number."""
    _refuse(_SAMPLE_RULES["time"].problem(time_s))
    _refuse(_SAMPLE_RULES["monotonic"].problem(monotonic))
    _refuse(_SAMPLE_RULES["seq"].problem(seq))


def check_time(value: Any) -> bool:
    """Whether a value is a time every view can show (see MAX_TIME_S)."""
    return _float_check(value) is None


def check_warnings(warnings: Any) -> None:
    _refuse(_SAMPLE_RULES["warnings"].problem(warnings))


def check_cgroup_path(path: Any, what: str = "cgroup path") -> None:
    if not is_cgroup_path(path):
        raise BadRecord(f"{what}: {kind_of(path)}, not a cgroup path")


class _Schema:
    """One record type as a file wrote it: the checks by written position, and where the current fields are."""

    def __init__(self, cls: type, written: Any, current: tuple[str, ...], nested: dict[str, Check]) -> None:
        if type(written) is not list or not all(type(name) is str for name in written):
            raise BadRecord(f"the {cls.__name__} schema is not a list of field names")
        if len(set(written)) != len(written):
            raise BadRecord(f"the {cls.__name__} schema names a field twice")
        rules = {rule.name: rule for rule in field_rules(cls)}
        missing = [name for name in current if name not in written and _needs_value(cls, name)]
        if missing:
            raise BadRecord(f"the {cls.__name__} schema lacks {', '.join(missing)}")
        self.owner = cls.__name__
        self.size = len(written)
        self.mapping = [(name, index) for index, name in enumerate(written) if name in current]
        self.rules: list[FieldRule | None] = []
        for name in written:
            rule = rules.get(name)
            if rule is not None and name in nested:
                rule = dataclasses.replace(rule, check=_optional(nested[name]))
            self.rules.append(rule)
        self.checked = [(index, rule) for index, rule in enumerate(self.rules) if rule is not None]
        # The same checks compiled (see fast_expression): per position, and for a whole record at once.  The source
        # is made of this module's constants and positions only, never of anything read from the file.
        namespace: dict[str, Any] = {"is_cgroup_path": is_cgroup_path}
        self.value_ok: list[Callable[[Any], bool] | None] = []
        for index, rule in enumerate(self.rules):
            if rule is None:
                self.value_ok.append(None)
                continue
            expression = None if rule.name in nested else fast_expression(rule.hint, rule.name, namespace)
            if expression is None:
                namespace[f"check_{index}"] = rule.check
                expression = f"check_{index}({{v}}) is None"
            self.value_ok.append(eval(f"lambda v: {expression.replace('{v}', 'v')}", namespace))
        self.record_ok = compiled_check(self.rules, frozenset(nested))

    def check_record(self, values: Any) -> None:
        """A whole record: a list as long as the schema, every known field valid."""
        if self.record_ok(values):
            return
        if type(values) is not list or len(values) != self.size:
            raise BadRecord(f"a {self.owner} record: {kind_of(values)} of the wrong shape")
        for index, rule in self.checked:
            problem = rule.check(values[index])
            if problem is not None:
                raise BadRecord(f"{self.owner}.{rule.name}: {kind_of(values[index])}, {problem}")

    def check_changes(self, changes: Any, keys: int) -> None:
        """A delta's [index, value, ...] pairs: known positions past the ``keys`` identifying fields, valid values."""
        if type(changes) is not list or len(changes) % 2:
            raise BadRecord(f"a {self.owner} change: {kind_of(changes)} of the wrong shape")
        for position in range(0, len(changes), 2):
            index = changes[position]
            if type(index) is not int or not keys <= index < self.size:
                raise BadRecord(f"a {self.owner} change names no field it may change")
            rule = self.rules[index]
            if rule is not None:
                problem = rule.check(changes[position + 1])
                if problem is not None:
                    raise BadRecord(f"{self.owner}.{rule.name}: {kind_of(changes[position + 1])}, {problem}")

    def merge_changes(self, record: list[Any], changes: Any, keys: int) -> list[Any]:
        """``record`` with a delta's [index, value, ...] pairs applied, each checked on the way (one pass: deltas of
        a busy node change thousands of values a sample)."""
        if type(changes) is not list or len(changes) % 2:
            raise BadRecord(f"a {self.owner} change: {kind_of(changes)} of the wrong shape")
        merged = list(record)
        value_ok = self.value_ok
        size = self.size
        pairs = iter(changes)
        for index, value in zip(pairs, pairs, strict=False):
            if type(index) is not int or not keys <= index < size:
                raise BadRecord(f"a {self.owner} change names no field it may change")
            ok = value_ok[index]
            if ok is not None and not ok(value):
                self.check_changes(changes, keys)  # says what is wrong
            merged[index] = value
        return merged


def _needs_value(cls: type, name: str) -> bool:
    """A field a record cannot do without: no default, and None is not one of its values."""
    rule = next(rule for rule in field_rules(cls) if rule.name == name)
    return rule.required and rule.check(None) is not None


class Decoder:
    """Turns records back into model objects using the schemas the file was written with, checking them on the way.

    The header's schemas are untrusted too: a schema that is not a list of names, that lacks a field without which
    no object can be made, or that moves the key fields (a cgroup's path first, a task's pid and start time first:
    the reader indexes records by them) raises :class:`BadRecord` here, and the file is refused as a whole.
    """

    def __init__(self, file_schemas: Any) -> None:
        if type(file_schemas) is not dict:
            raise BadRecord("the record schemas are not an object")
        pressure = _Schema(Pressure, file_schemas.get("pressure", list(PRESSURE_FIELDS)), PRESSURE_FIELDS, {})
        self._pressure_schema = pressure

        def pressure_check(value: Any) -> str | None:
            try:
                pressure.check_record(value)
            except BadRecord as error:
                return str(error)
            return None

        self._cgroup_schema = _Schema(
            Cgroup, file_schemas.get("cgroup", list(CGROUP_FIELDS)), CGROUP_FIELDS, {"pressure": pressure_check}
        )
        self._task_schema = _Schema(Task, file_schemas.get("task", list(TASK_FIELDS)), TASK_FIELDS, {})
        self._node_schema = _Schema(NodeInfo, file_schemas.get("node", list(NODE_FIELDS)), NODE_FIELDS, {})
        if [rule.name if rule else None for rule in self._cgroup_schema.rules[:1]] != ["path"]:
            raise BadRecord("the Cgroup schema does not start with the path")
        if [rule.name if rule else None for rule in self._task_schema.rules[:2]] != ["pid", "start_ticks"]:
            raise BadRecord("the Task schema does not start with the pid and start time")
        self._cgroup = self._cgroup_schema.mapping
        self._task = self._task_schema.mapping
        self._node = self._node_schema.mapping
        self._pressure = pressure.mapping

    @staticmethod
    def _fields(values: list[Any], mapping: list[tuple[str, int]]) -> dict[str, Any]:
        return {name: values[index] for name, index in mapping if index < len(values)}

    # Checks of raw records, for the reader's first pass over a segment (objects are made later, from checked
    # records only, so making them cannot fail).

    def check_cgroup(self, values: Any) -> None:
        self._cgroup_schema.check_record(values)

    def check_cgroup_changes(self, changes: Any) -> None:
        self._cgroup_schema.check_changes(changes, keys=1)

    def check_task(self, values: Any) -> None:
        self._task_schema.check_record(values)

    def check_task_changes(self, changes: Any) -> None:
        self._task_schema.check_changes(changes, keys=2)

    def merge_cgroup_changes(self, record: list[Any], changes: Any) -> list[Any]:
        """A known cgroup's record with a delta's changes applied, checked."""
        return self._cgroup_schema.merge_changes(record, changes, 1)

    def merge_task_changes(self, record: list[Any], changes: Any) -> list[Any]:
        """A known task's record with a delta's changes applied, checked."""
        return self._task_schema.merge_changes(record, changes, 2)

    # Objects.

    def cgroup(self, values: list[Any], identity: Identity) -> Cgroup:
        fields = self._fields(values, self._cgroup)
        pressure = fields.get("pressure")
        if pressure is not None:
            fields["pressure"] = Pressure(**self._fields(pressure, self._pressure))
        fields["pids"] = tuple(fields.get("pids") or ())
        return _build(Cgroup, fields, identity=identity)

    def task(self, values: list[Any]) -> Task:
        return _build(Task, self._fields(values, self._task))

    def node(self, values: Any) -> NodeInfo:
        """A node record, checked (it is made at once: there is one per sample at most)."""
        self._node_schema.check_record(values)
        return _build(NodeInfo, self._fields(values, self._node))

    @staticmethod
    def identity(values: Any) -> Identity:
        """An identity record, checked: [kind, qos, pod, container, label] with pod and container as lists."""
        problem = _IDENTITY_CHECK(values)
        if problem is not None:
            raise BadRecord(f"a cgroup identity: {problem}")
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


def decode_event(data: Any) -> OomEvent:
    """An event object back into an OomEvent, checked first (a bad one raises :class:`BadRecord`)."""
    _refuse(_EVENT_CHECK(data))
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
