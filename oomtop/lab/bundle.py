"""Node metadata the way containerd leaves it:
``<lab dir>/run/containerd/io.containerd.runtime.v2.task/k8s.io/<id>/config.json``.

The annotations are the ones containerd's CRI plugin puts in every OCI bundle, so oomtop's own
:mod:`oomtop.collect.identity` resolves the lab's pod and container names exactly as on a real node (the lab's
Collector reads node metadata below the lab directory).  Under ``--runtime runc`` the same file is the bundle runc
runs; under ``--runtime plain`` it carries the annotations only.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

BUNDLES = "run/containerd/io.containerd.runtime.v2.task/k8s.io"


def bundle_dir(lab_dir: str, container_id: str) -> str:
    return os.path.join(lab_dir, BUNDLES, container_id)


def cri_annotations(
    *,
    container_id: str,
    sandbox_id: str,
    pod_name: str,
    namespace: str,
    pod_uid: str,
    container_name: str | None,
    sandbox: bool,
) -> dict[str, str]:
    values = {
        "io.kubernetes.cri.container-type": "sandbox" if sandbox else "container",
        "io.kubernetes.cri.sandbox-id": sandbox_id,
        "io.kubernetes.cri.sandbox-name": pod_name,
        "io.kubernetes.cri.sandbox-namespace": namespace,
        "io.kubernetes.cri.sandbox-uid": pod_uid,
    }
    if not sandbox and container_name:
        values["io.kubernetes.cri.container-name"] = container_name
    return values


def write_config(lab_dir: str, container_id: str, document: dict[str, Any]) -> str:
    """Write ``config.json`` atomically (a reader never sees half a file); returns the bundle directory."""
    directory = bundle_dir(lab_dir, container_id)
    os.makedirs(directory, mode=0o711, exist_ok=True)
    path = os.path.join(directory, "config.json")
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1)
    os.replace(temporary, path)
    return directory


def remove(lab_dir: str, container_id: str) -> None:
    shutil.rmtree(bundle_dir(lab_dir, container_id), ignore_errors=True)
