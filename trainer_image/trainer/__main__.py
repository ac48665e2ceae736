"""``python -m trainer`` / ``tunestack-trainer``: fine-tune a model on a Vertex-format dataset.

Example::

    python -m trainer --base-model ./tiny --train-data train.jsonl --output-dir ./out \\
        --tuning-mode PEFT_ADAPTER --epochs 3 --adapter-size 8

Exit codes: 0 done (or already done by this configuration), 1 invalid configuration or data,
or an output written by a different run config (``error:`` lines on stderr, nothing written),
2 usage, 130 interrupted (SIGINT), 143 terminated (SIGTERM). A signal unwinds the run, so its
scratch directory is removed; a run killed with SIGKILL leaves one, which the next start
removes (see :func:`sweep_scratch`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
import warnings
from pathlib import Path
from types import FrameType

from trainer.config import ConfigError, TrainConfig, parse
from trainer.recipe import DataError
from trainer.runconfig import RunConfigMismatch
from trainer.train import run

#: Scratch directories are ``$TMPDIR/tunestack-trainer-<pid>-<random>``.
SCRATCH_PREFIX = "tunestack-trainer-"
_SCRATCH = re.compile(re.escape(SCRATCH_PREFIX) + r"(\d+)-")


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so ``finally`` blocks (scratch cleanup) run."""


def main(argv: list[str] | None = None) -> int:
    """Parses flags, runs training, and maps user errors to exit code 1 without a traceback."""
    with contextlib.suppress(ValueError):  # not the main thread (tests call main in-process)
        signal.signal(signal.SIGTERM, _terminate)
    sweep_scratch()
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("error: terminated (SIGTERM)", file=sys.stderr)
        return 143


def entry() -> int:
    """The console script and ``python -m trainer``: :func:`main`, then an exit that a late
    signal cannot turn into a crash.

    Once the run has its exit status, SIGINT and SIGTERM are ignored: Python restores the
    default handlers while it shuts down, so a signal arriving then would kill the process by
    the signal (no message, and a finished run would read as a failed one).
    """
    try:
        code = main()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        code = 130
    except Terminated:
        print("error: terminated (SIGTERM)", file=sys.stderr)
        code = 143
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    return code


def sweep_scratch(tmp: Path | None = None) -> list[Path]:
    """Removes the scratch directories of trainers that are no longer running.

    Returns:
        The directories removed.
    """
    removed: list[Path] = []
    root = tmp or Path(tempfile.gettempdir())
    try:
        entries = list(root.glob(SCRATCH_PREFIX + "*"))
    except OSError:
        return removed
    for path in entries:
        match = _SCRATCH.match(path.name)
        if match is None or _alive(int(match.group(1))) or not path.is_dir():
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _main(argv: list[str] | None) -> int:
    try:
        cfg = parse(argv)
    except ConfigError as e:
        for line in str(e).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 1
    quiet(cfg)
    try:
        return run(cfg)
    except DataError as e:
        for line in str(e).splitlines():
            print(line if ": error[" in line else f"error: {line}", file=sys.stderr)
        return 1
    except RunConfigMismatch as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"error: not found: {e.args[0] if e.args else e}", file=sys.stderr)
        return 1
    except (IsADirectoryError, NotADirectoryError, PermissionError) as e:
        print(f"error: {e.strerror}: {e.filename}", file=sys.stderr)
        return 1


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def quiet(cfg: TrainConfig) -> None:
    """Only our own output: library FutureWarnings are notes to developers, not to the person
    training (an explicit ``-W``/``PYTHONWARNINGS`` still wins), and ``--no-progress`` also
    silences the Hugging Face progress bars (loading weights, writing shards)."""
    if not sys.warnoptions:
        warnings.filterwarnings("ignore", category=FutureWarning)
    if not cfg.progress:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        # Imported here: these modules are loaded by the run anyway, and the switch must be
        # thrown before the first bar.
        import huggingface_hub.utils  # noqa: PLC0415
        import transformers.utils.logging  # noqa: PLC0415

        huggingface_hub.utils.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(entry())
