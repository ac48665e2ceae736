"""The training run: :class:`~trainer.recipe.FineTuneRecipe`'s setup, train, save, cleanup.

One process per device under ``torchrun``.

Artifacts (under ``<output>/postprocess/node-0/``, the layout Vertex writes):

- ``checkpoints/checkpoint-<step>/``: merged full weights after an epoch: one per epoch when
  epochs < 10, else 10 spread over training (``ceil(k * epochs / 10)`` for k = 1..10).
- ``checkpoints/final/``: merged full weights as ``model-0000k-of-0000n.safetensors`` shards
  (always at least two, so names match Vertex) + ``model.safetensors.index.json``, config,
  generation config, tokenizer (and processor for vision models); LoRA runs add ``adapter/``.
- ``metrics.jsonl`` (one line per logged step and per epoch evaluation), ``loss_curve.png``,
  ``run.json`` (configuration, data report, base model id, versions).
- ``resume/``: the latest training state (trainable weights, optimizer, scheduler, RNG, step).
  Re-running with the same output continues from there; a finished run exits at once.

Distribution: LoRA runs use DDP, full runs FSDP2 (``fully_shard`` per decoder layer); gloo on
CPU, NCCL on CUDA. The loss is a sum of token losses divided by the number of supervised tokens
in the whole optimizer step (all micro-batches, all processes), so gradient accumulation and
world size do not change what is optimised.

Modules: :mod:`~trainer.recipe` (the steps), :mod:`~trainer.model` (loading, LoRA, FSDP2),
:mod:`~trainer.steps` (loss, optimizer step, evaluation), :mod:`~trainer.checkpoint` (weights and
resume state), :mod:`~trainer.metrics` (metrics.jsonl, plot), :mod:`~trainer.distributed`.
"""

from __future__ import annotations

from trainer.config import TrainConfig
from trainer.recipe import FineTuneRecipe, Result


def run(cfg: TrainConfig) -> int:
    """Trains per ``cfg`` and writes the artifacts; returns the process exit code.

    Raises:
        DataError: when the dataset is unusable (reported by the CLI as a user error).
        FileNotFoundError: when an input does not exist.
    """
    train(cfg)
    return 0


def train(cfg: TrainConfig) -> Result:
    """Trains per ``cfg``, writes the artifacts, and returns the trained model.

    Raises:
        DataError: when the dataset is unusable.
        FileNotFoundError: when an input does not exist.
    """
    recipe = FineTuneRecipe(cfg)
    try:
        if not recipe.setup():
            return recipe.already_done()
        recipe.train()
        return recipe.save()
    finally:
        recipe.cleanup()
