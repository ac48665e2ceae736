"""The image's entrypoint: start ``torchrun`` for this node, then the trainer under it.

Vertex CustomJobs describe the cluster in ``CLUSTER_SPEC`` (JSON): ``cluster.workerpool0`` is
the primary replica (``host:port``), ``workerpool1`` the other workers, and ``task`` says which
one this is. Node rank: the primary is 0, ``workerpool1[i]`` is ``1 + i``. Without
``CLUSTER_SPEC`` (one machine) torchrun runs ``--standalone``. One process per visible GPU
(one on a CPU-only machine); ``TUNESTACK_NPROC_PER_NODE`` overrides.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence

DEFAULT_PORT = 29500


def torchrun_argv(env: Mapping[str, str], gpus: int, args: Sequence[str]) -> list[str]:
    """The ``torchrun`` command line for this node.

    Args:
        env: The process environment (reads ``CLUSTER_SPEC``, ``TUNESTACK_NPROC_PER_NODE``).
        gpus: Visible GPUs on this node.
        args: Trainer arguments, passed through.

    Returns:
        argv starting with ``torchrun``.

    Raises:
        ValueError: when ``CLUSTER_SPEC`` is present but malformed.
    """
    nproc = int(env.get("TUNESTACK_NPROC_PER_NODE") or max(gpus, 1))
    head = ["torchrun", f"--nproc_per_node={nproc}"]
    spec_text = env.get("CLUSTER_SPEC")
    if not spec_text:
        return [*head, "--standalone", "-m", "trainer", *args]
    try:
        spec = json.loads(spec_text)
        cluster = spec["cluster"]
        primary = cluster["workerpool0"][0]
        workers = list(cluster.get("workerpool1") or [])
        task = spec["task"]
        pool, index = task["type"], int(task.get("index", 0))
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise ValueError(f"CLUSTER_SPEC is not a Vertex cluster spec: {e}") from None
    nnodes = 1 + len(workers)
    if nnodes == 1:
        return [*head, "--standalone", "-m", "trainer", *args]
    rank = 0 if pool == "workerpool0" else 1 + index
    host, _, port = primary.rpartition(":")
    return [
        *head, f"--nnodes={nnodes}", f"--node_rank={rank}",
        f"--master_addr={host or primary}", f"--master_port={port or DEFAULT_PORT}",
        "-m", "trainer", *args,
    ]  # fmt: skip


def main() -> None:
    """Replaces this process with torchrun (so signals reach it directly)."""
    try:
        import torch  # noqa: PLC0415  (keeps torchrun_argv importable without CUDA)

        gpus = torch.cuda.device_count()
    except ImportError:
        gpus = 0
    try:
        argv = torchrun_argv(os.environ, gpus, sys.argv[1:])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    exe = shutil.which(argv[0])
    if exe is None:  # torchrun not on PATH: the same launcher as a module
        argv = [sys.executable, "-m", "torch.distributed.run", *argv[1:]]
        exe = sys.executable
    os.execv(exe, argv)


if __name__ == "__main__":
    main()
