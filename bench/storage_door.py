"""Storage throughput: the door + namespace relay against the bare emulator, side by side.

Every local client reaches fake-gcs-server through the storage door, and (where Linux allows)
the door reaches it through a Unix-socket relay into the emulator's own network namespace.
This measures what those two hops cost: upload and download of one object with
google-cloud-storage, for

- ``bare``: the emulator on a 127.0.0.1 port, no door (the peer: what the hops are added to);
- ``door``: ``tunestack serve`` with ``TUNESTACK_STORAGE_ISOLATION=off`` (door, TCP upstream);
- ``door+netns``: ``tunestack serve`` as users run it (door, relay, namespace).

Usage: ``python bench/storage_door.py [--mib 64] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.gcs import client as gcs_client  # noqa: E402
from infra.local import storage  # noqa: E402
from tests.local.conftest import start_server  # noqa: E402


def measure(endpoint: str, token: str | None, payload: bytes, repeat: int) -> tuple[float, float]:
    """Best upload and download seconds over ``repeat`` rounds."""
    client = gcs_client(endpoint=endpoint, token=token)
    bucket = client.bucket("bench")
    if not bucket.exists():
        client.create_bucket("bench")
    up, down = [], []
    for i in range(repeat):
        blob = bucket.blob(f"obj-{i}.bin")
        t = time.perf_counter()
        blob.upload_from_string(payload)
        up.append(time.perf_counter() - t)
        t = time.perf_counter()
        got = blob.download_as_bytes()
        down.append(time.perf_counter() - t)
        assert got == payload
    return min(up), min(down)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    payload = os.urandom(args.mib * 1024 * 1024)
    rows: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TUNESTACK_HOME"] = str(Path(tmp) / "bare")
        bare = storage.StorageEmulator(isolation="off")
        bare.start()
        try:
            rows["bare"] = measure(bare.url, None, payload, args.repeat)
        finally:
            bare.stop()
        for name, mode in (("door", "off"), ("door+netns", "netns")):
            server = start_server(
                Path(tmp) / name, ["--smoke"], {"TUNESTACK_STORAGE_ISOLATION": mode}
            )
            try:
                rows[name] = measure(server.storage_url, server.token, payload, args.repeat)
            finally:
                server.stop()
    mib = args.mib
    print(f"{mib} MiB object, best of {args.repeat}")
    print(
        f"{'path':<12} {'upload MiB/s':>13} {'download MiB/s':>15} {'vs bare up':>11} {'down':>6}"
    )
    base_up, base_down = rows["bare"]
    for name, (up, down) in rows.items():
        print(
            f"{name:<12} {mib / up:>13.0f} {mib / down:>15.0f} "
            f"{base_up / up:>10.2f}x {base_down / down:>5.2f}x"
        )


if __name__ == "__main__":
    main()
