"""Memory limits and ``oom_score_adj`` as kubelet sets them, and what this machine lets the lab set.

kubelet derives everything from the containers' memory requests and limits:

- the pod's QoS class (pkg/apis/core/v1/helper/qos): Guaranteed when every container's request equals its limit,
  BestEffort when no container has either, Burstable otherwise (the lab models memory only; kubelet also looks at
  CPU);
- the container cgroup's limit is the container's limit; the pod cgroup's limit is the sum of its containers'
  limits, set only when every container has one (pkg/kubelet/cm/helpers_linux.go ResourceConfigForPod);
- kubepods gets the node's allocatable memory: its capacity minus the system's reservation (the lab reserves
  32Mi, so kubepods runs out before the lab's parent cgroup, which has the capacity as its limit);
- each container's ``oom_score_adj`` (pkg/kubelet/qos/policy.go), computed in :func:`oomtop.rank.expected_kubelet_adj`;
  sandboxes (pause) get -998 from the runtime.

Lowering ``oom_score_adj`` below a process's inherited minimum needs CAP_SYS_RESOURCE.  Where the lab lacks it,
:class:`AdjPolicy` holds the lowest value it may set, and every process gets ``max(kubelet's value, lowest)``:
oomtop's predictions then use what the kernel really holds.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from oomtop.model import QosClass
from oomtop.rank import (
    KUBELET_SANDBOX_ADJ,
    OOM_SCORE_ADJ_MAX,
    OOM_SCORE_ADJ_MIN,
    expected_kubelet_adj,
)

MIB = 1 << 20
_SUFFIXES = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
}  # fmt: skip
_QUANTITY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|k|M|G|T|)\s*")


def parse_quantity(text: str) -> int:
    """A Kubernetes memory quantity ("123Mi", "1Gi", "100M", "512Ki", "1000000") in bytes."""
    match = _QUANTITY.fullmatch(text)
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a memory size: {text!r} (examples: 512Mi, 1Gi, 100M)")
    return int(float(match.group(1)) * _SUFFIXES[match.group(2)])


def format_quantity(value: int) -> str:
    """Bytes as the shortest exact binary quantity ("123Mi", "1Gi", "1536Ki")."""
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        unit = _SUFFIXES[suffix]
        if value and value % unit == 0:
            return f"{value // unit}{suffix}"
    return str(value)


@dataclass(frozen=True, slots=True)
class Resources:
    """A container's memory request and limit (bytes); None where the pod spec leaves it out."""

    request_bytes: int | None = None
    limit_bytes: int | None = None

    @property
    def effective_request(self) -> int | None:
        """The API server defaults a missing request to the limit."""
        return self.request_bytes if self.request_bytes is not None else self.limit_bytes


def pod_qos(containers: Sequence[Resources]) -> QosClass:
    if all(c.limit_bytes is None and c.request_bytes is None for c in containers):
        return QosClass.BEST_EFFORT
    if all(c.limit_bytes is not None and c.effective_request == c.limit_bytes for c in containers):
        return QosClass.GUARANTEED
    return QosClass.BURSTABLE


def pod_limit(containers: Sequence[Resources]) -> int | None:
    """The pod cgroup's memory limit: the sum of the containers' limits, when every container has one."""
    if not containers or any(c.limit_bytes is None for c in containers):
        return None
    return sum(c.limit_bytes for c in containers if c.limit_bytes is not None)  # all of them (checked above)


def container_adj(qos: QosClass, resources: Resources, capacity_bytes: int) -> int:
    """kubelet's ``GetContainerOOMScoreAdjust`` for one container of a pod of class ``qos``."""
    return expected_kubelet_adj(qos, resources.effective_request, capacity_bytes)


SANDBOX_ADJ = KUBELET_SANDBOX_ADJ
SYSTEM_RESERVED = 32 * MIB  # the lab's --system-reserved: kubepods, not the lab's whole node, runs out first


def allocatable(capacity_bytes: int) -> int:
    """kubepods' limit: the node's capacity minus what is reserved for the system (kubelet's node allocatable)."""
    return capacity_bytes - SYSTEM_RESERVED


# ------------------------------------------------------------------------------------- what the kernel allows


def write_adj(pid: int, value: int) -> int:
    """Write ``/proc/<pid>/oom_score_adj`` (a process the lab started) and return what the kernel now holds."""
    path = f"/proc/{pid}/oom_score_adj"
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)
    return read_adj(pid)


def read_adj(pid: int) -> int:
    with open(f"/proc/{pid}/oom_score_adj", encoding="ascii") as handle:
        return int(handle.read())


def _allowed(pid: int, value: int) -> bool:
    try:
        return write_adj(pid, value) == value
    except PermissionError:
        return False
    except OSError as error:
        if error.errno == errno.EACCES:
            return False
        raise


def probe_lowest_adj(pid: int | None = None) -> int:
    """The lowest ``oom_score_adj`` this process (and so every child it starts) may set.

    Without CAP_SYS_RESOURCE the kernel refuses (EACCES) values below the minimum the process inherited, and
    that minimum cannot be read: find it by bisection, then put the original value back (raising is always
    allowed).
    """
    pid = os.getpid() if pid is None else pid
    original = read_adj(pid)
    try:
        if _allowed(pid, OOM_SCORE_ADJ_MIN):
            return OOM_SCORE_ADJ_MIN
        low, high = OOM_SCORE_ADJ_MIN, original  # low refused, high allowed (the current value)
        while high - low > 1:
            middle = (low + high) // 2
            if _allowed(pid, middle):
                high = middle
            else:
                low = middle
        return high
    finally:
        write_adj(pid, original)


@dataclass(frozen=True, slots=True)
class AdjPolicy:
    """The values the lab gives processes: kubelet's, raised to the lowest this machine allows."""

    lowest: int = OOM_SCORE_ADJ_MIN

    def effective(self, wanted: int) -> int:
        return min(OOM_SCORE_ADJ_MAX, max(wanted, self.lowest))

    @property
    def restricted(self) -> bool:
        return self.lowest > KUBELET_SANDBOX_ADJ

    def note(self) -> str | None:
        """The one sentence telling the user, or None when nothing is changed."""
        if not self.restricted:
            return None
        return (
            f"this machine does not let the lab lower oom_score_adj below {self.lowest} (no CAP_SYS_RESOURCE): "
            f"Guaranteed containers and sandboxes run with {self.lowest} instead of kubelet's -997 and the "
            f"runtime's -998; predictions use the values the kernel holds"
        )
