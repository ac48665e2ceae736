"""``python -m trainer`` / ``tunestack-trainer``: fine-tune a model on a Vertex-format dataset.

Example::

    python -m trainer --base-model ./tiny --train-data train.jsonl --output-dir ./out \\
        --tuning-mode PEFT_ADAPTER --epochs 3 --adapter-size 8

Exit codes: 0 done (or already done), 1 invalid configuration or data (``error:`` lines on
stderr, nothing written), 2 usage.
"""

from __future__ import annotations

import os
import sys
import warnings

from trainer.config import ConfigError, TrainConfig, parse
from trainer.recipe import DataError
from trainer.train import run


def main(argv: list[str] | None = None) -> int:
    """Parses flags, runs training, and maps user errors to exit code 1 without a traceback."""
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
    except FileNotFoundError as e:
        print(f"error: not found: {e.args[0] if e.args else e}", file=sys.stderr)
        return 1


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
    sys.exit(main())
