"""No traceback for user-facing failures, and no leftovers (issue 14, findings 6-7)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from infra import checks
from infra.cli import main
from infra.local import converge
from tests.load.test_load import GOOD

TRAINER = Path(__file__).resolve().parents[2] / "trainer_image"
ENV = {**os.environ, "PYTHONPATH": f"{TRAINER.parent}{os.pathsep}{TRAINER}"}


def trainer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainer", "--base-model", "x", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env or ENV,
    )


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert lines, out.stderr
    return "\n".join(lines)


def test_trainer_train_data_dir_and_output_dir_file(tmp_path: Path) -> None:
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    err = one_line_error(trainer("--train-data", str(tmp_path), "--output-dir", str(a_file)))
    assert "train_data" in err and "is a directory" in err
    assert "output_dir" in err and "not a directory" in err


def test_trainer_fifo_symlink_loop_dev_zero_are_not_regular(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    for path, words in (
        (fifo, "not a regular file"),
        (loop, "cannot be read"),
        ("/dev/zero", "not a regular file"),
    ):
        err = one_line_error(
            trainer("--train-data", str(path), "--output-dir", str(tmp_path / "o"))
        )
        assert words in err and "does not exist" not in err


def test_trainer_refuses_escaping_output_uri(tmp_path: Path) -> None:
    data = tmp_path / "t.jsonl"
    data.write_text("{}\n")
    err = one_line_error(trainer("--train-data", str(data), "--output-dir", "gs://b/../../etc"))
    assert "output_dir" in err and "'..' segment" in err


def test_terminated_trainer_leaves_no_scratch(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts, never answers: the trainer blocks fetching its base model
    env = {
        **ENV,
        "TMPDIR": str(tmp_path),
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{silent.getsockname()[1]}",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trainer",
            "--base-model",
            "gs://b/base",
            "--train-data",
            "gs://b/t.jsonl",
            "--output-dir",
            "gs://b/out",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 90
    while not list(tmp_path.glob("tunestack-trainer-*")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    assert list(tmp_path.glob("tunestack-trainer-*"))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    silent.close()
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert list(tmp_path.glob("tunestack-trainer-*")) == []


def test_scratch_of_a_killed_trainer_is_swept_at_the_next_start(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"tunestack-trainer-{dead.pid}-abc"
    stale.mkdir()
    (stale / "weights.bin").write_bytes(b"x")
    mine = tmp_path / f"tunestack-trainer-{os.getpid()}-def"
    mine.mkdir()
    trainer(
        "--train-data",
        str(tmp_path / "missing.jsonl"),
        "--output-dir",
        str(tmp_path / "o"),
        env={**ENV, "TMPDIR": str(tmp_path)},
    )
    assert not stale.exists() and mine.exists()


def test_validate_names_fifo_symlink_loop_and_dev_zero_datasets(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    for target, words in (
        (fifo, "not a regular file"),
        (loop, "cannot be read"),
        (Path("/dev/zero"), "not a regular file"),
    ):
        spec = tmp_path / "s.yaml"
        spec.write_text(
            GOOD + f"datasets:\n  - name: d\n    train: {target}\n    bucket: acme-ml-dev-tuning\n"
        )
        report = checks.validate(spec)
        messages = [d.message for d in report.diagnostics if d.code.startswith("file-")]
        assert any(words in m for m in messages), messages
        assert not any("does not exist" in m for m in messages)


def test_up_with_the_server_gone_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def lost(*_: object, **__: object) -> None:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as e:
            raise requests.exceptions.ConnectionError("HTTPConnectionPool: Max retries") from e

    monkeypatch.setattr(converge, "up", lost)
    spec = tmp_path / "s.yaml"
    spec.write_text(GOOD)
    assert main(["up", str(spec), "--local"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "tunestack serve" in err and "connection" in err


def test_ctrl_c_is_130_and_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(converge, "up", interrupted)
    spec = tmp_path / "s.yaml"
    spec.write_text(GOOD)
    assert main(["up", str(spec), "--local"]) == 130
    assert capsys.readouterr().err == "tunestack: interrupted\n"


@pytest.mark.parametrize("delay", [0.3, 1.0])
def test_ctrl_c_early_in_up_subprocess(tmp_path: Path, delay: float) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(GOOD)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from infra.cli import run; sys.exit(run())",
            "up",
            str(spec),
            "--local",
        ],
        env={**ENV, "TUNESTACK_HOME": str(tmp_path / "home")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode in (0, 1) and "Traceback" not in err:
        return  # it finished (or failed cleanly) before the signal arrived
    assert proc.returncode == 130 and "Traceback" not in err, err


@pytest.mark.parametrize(
    "command",
    [
        ["-c", "import sys; from infra.cli import run; sys.exit(run())", "up", "{spec}", "--local"],
        ["-c", "import sys; from infra.cli import run; sys.exit(run())", "validate", "{spec}"],
        ["-m", "trainer", "--base-model", "x", "--train-data", "{missing}"],
    ],
    ids=["up", "validate", "trainer"],
)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_exiting_keeps_the_printed_status(
    tmp_path: Path, command: list[str], signum: int
) -> None:
    """A signal that lands after the command printed its result, while Python shuts down
    (when it puts the default handlers back), must not turn exit 1 into death by the signal
    (status -2, no message) or into a KeyboardInterrupt traceback from logging's shutdown.
    Signalling right after the error line hit that window 9 times in 10."""
    spec = tmp_path / "s.yaml"
    spec.write_text(GOOD)
    args = [a.format(spec=spec, missing=tmp_path / "nope.jsonl") for a in command]
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, *args],
            env={**ENV, "TUNESTACK_HOME": str(tmp_path / "home")},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        first = ""
        while "error" not in first and proc.poll() is None:  # the result, then the signal
            first = proc.stdout.readline()
        proc.send_signal(signum)
        rest = proc.stdout.read()
        proc.wait(timeout=60)
        assert "error" in first, first + rest
        assert "Traceback" not in rest, rest
        if signum == signal.SIGINT and "interrupted" in rest:
            assert proc.returncode == 130
        elif signum == signal.SIGTERM and "terminated" in rest:
            assert proc.returncode == 143
        else:
            assert proc.returncode == 1, (proc.returncode, rest)
