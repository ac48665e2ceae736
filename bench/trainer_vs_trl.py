"""Our trainer vs TRL's SFTTrainer on the same tiny model, data and settings (CPU, fp32).

Run: ``.venv/bin/python bench/trainer_vs_trl.py`` (``--help`` for sizes; ``--quick`` for a
small run). Each run is its own subprocess; the order alternates (ours, TRL, TRL, ours, ...).

Held equal (see shared/docs/trainer.md): the model (random-initialised Llama, hidden 256,
4 layers, 4 heads / 2 KV heads, FFN 768, ~3.4M parameters, saved as safetensors), the
tokenizer and chat template, the data (seeded copy-the-words conversations, in the same order:
no shuffling on either side), max length, batch size, LoRA r / alpha / dropout / targets (all
attention and MLP projections), fp32, gradient checkpointing (off on both by default; ``--gc``
turns it on for both), loss = mean NLL over supervised tokens (TRL ``loss_type="nll"``,
completion-only), fused AdamW (TRL's default; ours too) with the same LR, linear decay, no warm-up, clipping 1.0,
seed, ``torch.set_num_threads``. The supervised tokens are computed independently by each
trainer (TRL from its prompt/completion split, ours from turn boundaries); the equal counts
and equal step-1 losses show that both did the same work.

Measured per run: tokens/s (all and supervised) and tokens per CPU-second over the same window
on both sides (end of step 1 to end of the last step, timed at the optimizer step: model
loading, data preparation and step-1 warm-up excluded; CPU time is the robust figure on a
shared machine, wall time is what users see), steps/s, peak RSS of the
process (``ru_maxrss``), step-1 loss, last-step loss; then one shared evaluator (this script,
the same code for both) computes the eval loss of each saved model on held-out data.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WORDS = [
    "red",
    "green",
    "blue",
    "yellow",
    "orange",
    "purple",
    "black",
    "white",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "hello",
    "world",
    "question",
    "answer",
]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_pairs(n: int, seed: int, words: int) -> list[tuple[str, str]]:
    """Seeded (prompt, answer) pairs; the answer copies the prompt's words."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        w = " ".join(rng.choice(WORDS) for _ in range(words))
        pairs.append((f"copy: {w}", w))
    return pairs


def setup(work: Path, args: argparse.Namespace) -> None:
    """Writes the tiny model and the datasets (ours: Vertex prompt/completion JSONL; TRL:
    conversational prompt/completion JSONL, the same conversations)."""
    from trainer.tiny import build_tiny_checkpoint  # noqa: PLC0415

    build_tiny_checkpoint(
        "llama", work / "model", seed=0, hidden_size=256, num_layers=4, intermediate_size=768
    )
    for name, n, seed in (("train", args.examples, 1), ("eval", args.eval_examples, 2)):
        pairs = make_pairs(n, seed, args.words)
        with (work / f"{name}.jsonl").open("w") as f:
            for p, a in pairs:
                f.write(json.dumps({"prompt": p, "completion": a}) + "\n")
        with (work / f"{name}_trl.jsonl").open("w") as f:
            for p, a in pairs:
                f.write(
                    json.dumps(
                        {
                            "prompt": [{"role": "user", "content": p}],
                            "completion": [{"role": "assistant", "content": a}],
                        }
                    )
                    + "\n"
                )


def lr_for(mode: str) -> float:
    return 1e-3 if mode == "LORA" else 1e-4


# --- workers (each in its own process) -----------------------------------------------------


def worker_ours(work: Path, mode: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import torch  # noqa: PLC0415
    from trainer.config import from_dict  # noqa: PLC0415
    from trainer.train import train  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    ends: list[tuple[float, float]] = []
    adamw_step = torch.optim.AdamW.step

    def timed_step(self: Any, *a: Any, **k: Any) -> Any:
        res = adamw_step(self, *a, **k)
        ends.append((time.perf_counter(), time.process_time()))
        return res

    torch.optim.AdamW.step = timed_step  # type: ignore[method-assign]
    cfg = from_dict({
        "base_model": str(work / "model"), "train_data": str(work / "train.jsonl"),
        "output_dir": str(out), "tuning_mode": "FULL" if mode == "FULL" else "PEFT_ADAPTER",
        "epochs": 1, "learning_rate": lr_for(mode), "adapter_size": args.rank,
        "max_seq_length": args.max_len, "batch_size": args.batch, "seed": 0,
        "shuffle": False, "warmup_ratio": 0.0, "gradient_checkpointing": args.gc,
        "max_grad_norm": 1.0, "progress": False, "num_threads": args.threads,
    })  # fmt: skip
    train(cfg)
    node = out / "postprocess/node-0"
    recs = [json.loads(x) for x in (node / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in recs if "loss" in r]
    tokens = [r["tokens"] for r in steps]
    sup = [r["supervised_tokens"] for r in steps]
    return {
        "step1_loss": steps[0]["loss"],
        "last_loss": steps[-1]["loss"],
        "steps": len(steps),
        "tokens": sum(tokens),
        "supervised": sum(sup),
        **_windows(ends, tokens, sup),
        "model_dir": str(node / "checkpoints/final"),
    }


def _windows(ends: list[tuple[float, float]], tokens: list[int], sup: list[int]) -> dict[str, Any]:
    """Wall and CPU time from the end of step 1 to the end of the last step, and the tokens
    of steps 2..N: the same window on both sides (step 1 carries one-off warm-up costs)."""
    assert len(ends) == len(tokens), (len(ends), len(tokens))
    return {
        "win_wall": ends[-1][0] - ends[0][0],
        "win_cpu": ends[-1][1] - ends[0][1],
        "win_tokens": sum(tokens[1:]),
        "win_supervised": sum(sup[1:]),
    }


def worker_trl(work: Path, mode: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import torch  # noqa: PLC0415
    from datasets import load_dataset  # noqa: PLC0415
    from peft import LoraConfig  # noqa: PLC0415
    from transformers import (  # noqa: PLC0415
        AutoModelForCausalLM,
        AutoTokenizer,
        TrainerCallback,
    )
    from trl import SFTConfig, SFTTrainer  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    stats: dict[str, Any] = {"losses": [], "sup": [], "tok": [], "ends": []}

    class Timer(TrainerCallback):
        def on_step_end(self, *a: Any, **k: Any) -> None:
            stats["ends"].append((time.perf_counter(), time.process_time()))

    class Recording(SFTTrainer):
        def compute_loss(self, model: Any, inputs: dict[str, Any], *a: Any, **k: Any) -> Any:
            res = super().compute_loss(model, inputs, *a, **k)
            if model.training:
                loss = res[0] if isinstance(res, tuple) else res
                stats["losses"].append(float(loss.detach()))
                stats["sup"].append(int((inputs["labels"][:, 1:] != -100).sum()))
                stats["tok"].append(int(inputs["attention_mask"].sum()))
            return res

    tok = AutoTokenizer.from_pretrained(work / "model")
    model = AutoModelForCausalLM.from_pretrained(work / "model", dtype=torch.float32)
    ds = load_dataset("json", data_files=str(work / "train_trl.jsonl"), split="train")
    cfg = SFTConfig(
        output_dir=str(out), per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1, num_train_epochs=1, learning_rate=lr_for(mode),
        lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        optim="adamw_torch_fused", seed=0, data_seed=0, train_sampling_strategy="sequential",
        gradient_checkpointing=args.gc, bf16=False, fp16=False, use_cpu=True,
        max_length=args.max_len, packing=False, loss_type="nll", completion_only_loss=True,
        logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True,
        dataloader_num_workers=0,
    )  # fmt: skip
    peft_cfg = None
    if mode == "LORA":
        peft_cfg = LoraConfig(
            r=args.rank,
            lora_alpha=2 * args.rank,
            lora_dropout=0.0,
            target_modules=TARGETS,
            task_type="CAUSAL_LM",
        )
    trainer = Recording(
        model=model,
        args=cfg,
        train_dataset=ds,
        processing_class=tok,
        peft_config=peft_cfg,
        callbacks=[Timer()],
    )
    trainer.train()
    final = out / "final"
    m = trainer.model
    if mode == "LORA":
        m = m.merge_and_unload()
    m.save_pretrained(final)
    return {
        "step1_loss": stats["losses"][0],
        "last_loss": stats["losses"][-1],
        "steps": len(stats["losses"]),
        "tokens": sum(stats["tok"]),
        "supervised": sum(stats["sup"]),
        **_windows(stats["ends"], stats["tok"], stats["sup"]),
        "model_dir": str(final),
    }


# --- shared evaluator ----------------------------------------------------------------------


def evaluate(work: Path, model_dir: str, args: argparse.Namespace) -> float:
    """Mean NLL per supervised token on the eval set: the same code for both trainers."""
    import torch  # noqa: PLC0415
    from trainer.data import (  # noqa: PLC0415
        DataReport,  # noqa: PLC0415
        collate,
        encode_all,
        make_rows,
        read_examples,
    )
    from trainer.encoding import Encoder  # noqa: PLC0415
    from trainer.steps import loss_sum  # noqa: PLC0415
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    tok = AutoTokenizer.from_pretrained(work / "model")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    examples, _, _ = read_examples(work / "eval.jsonl")
    enc = encode_all(examples, Encoder(tok, args.max_len), DataReport())
    rows = make_rows(enc, packing=False, max_seq_length=args.max_len, seed=0)
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), 8):
            b = collate(rows[i : i + 8], pad_id=tok.pad_token_id, packed=False)
            labels = b.pop("labels")
            total += float(loss_sum(model, b, labels))
            n += int((labels[:, 1:] != -100).sum())
    return total / n


# --- driver --------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--examples", type=int, default=128)
    p.add_argument("--eval-examples", type=int, default=32)
    p.add_argument("--words", type=int, default=24, help="words per answer")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--max-len", type=int, default=512)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gc", action="store_true", help="gradient checkpointing on both")
    p.add_argument("--modes", default="LORA,FULL")
    p.add_argument("--quick", action="store_true", help="32 examples, 2 repeats")
    p.add_argument("--worker", choices=("ours", "trl"), help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.examples, args.repeats = 32, 2
    if args.worker:
        fn = worker_ours if args.worker == "ours" else worker_trl
        res = fn(args.work, args.mode, args, args.out)
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT " + json.dumps(res), flush=True)
        return 0

    work = Path(tempfile.mkdtemp(prefix="bench-trainer-vs-trl-"))
    setup(work, args)
    passthrough = [
        f"--examples={args.examples}",
        f"--words={args.words}",
        f"--batch={args.batch}",
        f"--max-len={args.max_len}",
        f"--rank={args.rank}",
        f"--threads={args.threads}",
        *(["--gc"] if args.gc else []),
    ]
    print(
        f"work dir {work}; {args.examples} train / {args.eval_examples} eval examples, "
        f"batch {args.batch}, max_len {args.max_len}, LoRA r{args.rank} a{2 * args.rank}, "
        f"threads {args.threads}, gradient checkpointing {'on' if args.gc else 'off'}, fp32"
    )
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for mode in args.modes.split(","):
        for r in range(args.repeats):
            order = ("ours", "trl") if r % 2 == 0 else ("trl", "ours")
            for who in order:
                out = work / f"run-{mode}-{who}-{r}"
                cmd = [
                    sys.executable,
                    __file__,
                    "--worker",
                    who,
                    "--mode",
                    mode,
                    "--work",
                    str(work),
                    "--out",
                    str(out),
                    *passthrough,
                ]
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
                if proc.returncode != 0 or line is None:
                    print(proc.stdout[-3000:], proc.stderr[-5000:], file=sys.stderr)
                    return 1
                res = json.loads(line[7:])
                res["wall"] = wall
                res["eval_loss"] = evaluate(work, res["model_dir"], args)
                results.setdefault((mode, who), []).append(res)
                print(
                    f"  {mode:4} {who:4} #{r + 1}: {res['win_tokens'] / res['win_wall']:7.0f} tok/s "
                    f"{res['win_tokens'] / res['win_cpu']:7.0f} tok/CPU-s  "
                    f"rss {res['peak_rss_mb']:4.0f} MB  step-1 loss "
                    f"{res['step1_loss']:.6f}  eval {res['eval_loss']:.4f}  wall {wall:.1f}s",
                    flush=True,
                )
    report(results)
    return 0


def report(results: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
    """Prints medians side by side, the ratios, and whether the targets are met."""

    def med(rs: list[dict[str, Any]], f: Any) -> float:
        return statistics.median(f(r) for r in rs)

    rows = [
        ("tokens/s", lambda r: r["win_tokens"] / r["win_wall"], "{:.0f}"),
        ("supervised tokens/s", lambda r: r["win_supervised"] / r["win_wall"], "{:.0f}"),
        ("steps/s", lambda r: (r["steps"] - 1) / r["win_wall"], "{:.2f}"),
        ("tokens per CPU-second", lambda r: r["win_tokens"] / r["win_cpu"], "{:.0f}"),
        ("peak RSS MB", lambda r: r["peak_rss_mb"], "{:.0f}"),
        ("step-1 loss", lambda r: r["step1_loss"], "{:.6f}"),
        ("last-step loss", lambda r: r["last_loss"], "{:.4f}"),
        ("eval loss (shared evaluator)", lambda r: r["eval_loss"], "{:.4f}"),
        ("supervised tokens", lambda r: r["supervised"], "{:.0f}"),
        ("process wall s", lambda r: r["wall"], "{:.1f}"),
    ]
    for mode in sorted({m for m, _ in results}):
        ours, trl = results[(mode, "ours")], results[(mode, "trl")]
        print(f"\n{mode} (medians of {len(ours)} runs each)")
        print(f"  {'':30} {'ours':>12} {'TRL':>12} {'ours/TRL':>9}")
        for name, f, fmt in rows:
            a, b = med(ours, f), med(trl, f)
            ratio = f"{a / b:9.3f}" if b else "      n/a"
            print(f"  {name:30} {fmt.format(a):>12} {fmt.format(b):>12} {ratio}")
        d1 = abs(med(ours, lambda r: r["step1_loss"]) - med(trl, lambda r: r["step1_loss"]))
        same_sup = {r["supervised"] for r in ours} == {r["supervised"] for r in trl}
        tps = med(ours, rows[0][1]) / med(trl, rows[0][1])
        cpu = med(ours, rows[3][1]) / med(trl, rows[3][1])
        rss = med(ours, rows[4][1]) / med(trl, rows[4][1])
        print(
            f"  targets: step-1 loss diff {d1:.2e} ({'ok' if d1 <= 1e-4 else 'MISSED'} <= 1e-4)"
            f"; supervised tokens equal: {'ok' if same_sup else 'MISSED'}"
            f"; tokens/s x{tps:.2f} ({'ok' if tps >= 1.0 else 'MISSED'} >= 1.0)"
            f"; tokens/CPU-s x{cpu:.2f}"
            f"; peak RSS x{rss:.2f} ({'ok' if rss <= 1.0 else 'MISSED'} <= 1.0)"
        )


if __name__ == "__main__":
    sys.exit(main())
