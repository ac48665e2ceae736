"""Dataset validation throughput: our full validation vs a stdlib ``json.loads`` floor.

Run: ``python bench/validate_throughput.py [--size-mb 1024] [--format chat] [--keep]``

Generates a JSONL of the requested size (default 200 MB; chat unless ``--format`` says
prompt_completion or generate_content) in a temporary folder, then
runs, each in its own subprocess so peak RSS is measured per side (``os.wait4``):

- baseline: read the file line by line and ``json.loads`` every line, nothing else;
- ours: :func:`infra.checks.validate_dataset_file` with every format check (no tokenizer),
  for Llama 3.1 8B (so the sequence-length check runs too): the default (the C text scanner,
  one process), the pure-Python fast layer used where the scanner was not built
  (``TUNESTACK_TEXTSCAN=0``), and split among worker processes (forced with
  ``TUNESTACK_VALIDATE_WORKERS``; the default only for files over 64 MiB on 4+ CPUs
  whose first line the scanner cannot prove).

Prints MB/s (wall clock, and per CPU-second, which a busy machine disturbs less), peak RSS
(of the largest process) and the ratios. Each side times its own work, not interpreter
start-up. Target: ours >= 2x the baseline's MB/s, peak RSS < 256 MB at 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Each child times its own work (imports and interpreter start-up excluded) and prints
# "wall-seconds cpu-seconds result" (process_time counts every thread); peak RSS is the
# whole child's.
BASELINE = """
import json, sys, time
t, c = time.perf_counter(), time.process_time()
n = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        json.loads(line)
        n += 1
print(time.perf_counter() - t, time.process_time() - c, n)
"""

# Decoders alone, for reference (what each costs before any check runs).
ORJSON = """
import orjson, sys, time
t, c = time.perf_counter(), time.process_time()
n = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        orjson.loads(line)
        n += 1
print(time.perf_counter() - t, time.process_time() - c, n)
"""

MSGSPEC = """
import os, sys, time
import msgspec
from infra.checks.dataset.blocks import CHAT_LINES
# Typed structs for chat (what the pure-Python layer decodes into); untyped for the others.
decoder = CHAT_LINES if os.environ["BENCH_FORMAT"] == "chat" else msgspec.json.Decoder()
t, c = time.perf_counter(), time.process_time()
n = 0
with open(sys.argv[1], "rb") as f:
    rest = b""
    while chunk := f.read(1 << 20):
        cut = chunk.rfind(b"\\n") + 1
        n += len(decoder.decode_lines(rest + chunk[:cut]))
        rest = chunk[cut:]
print(time.perf_counter() - t, time.process_time() - c, n)
"""

OURS = """
import resource, sys, time
from pathlib import Path
from infra import catalog
from infra.checks import validate_dataset_file
model = catalog.model("meta/llama3_1@llama-3.1-8b-instruct")
t, c = time.perf_counter(), time.process_time()
summary, diags = validate_dataset_file(Path(sys.argv[1]), display="bench.jsonl", model=model,
                                       tokenizer=None, max_seq_length=model.max_seq_length)
errors = [d for d in diags if d.severity == "error"]
assert not errors, errors[:3]
kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # worker processes, when any
cpu = time.process_time() - c + kids.ru_utime + kids.ru_stime
print(time.perf_counter() - t, cpu, summary.examples, summary.tokens, kids.ru_maxrss)
"""

_PROSE = (
    "the of and to in is you that it he was for on are as with his they at be this have from "
    "or one had by word but not what all were we when your can said there use an each which she "
    "do how their if will up other about out many then them these so some her would make like "
    "him into time has look two more write go see number no way could people my than first water "
    "been call who oil its now find long down day did get come made may part invoice billing "
    "password account refund shipping order delivery support cancel upgrade plan team seat "
    "café naïve façade — über"
)
_WORDS = _PROSE.split(" ")


FORMATS = ("chat", "prompt_completion", "generate_content")


def example(msgs: list[dict[str, str]], fmt: str) -> dict:
    """One conversation (system, then user/assistant turns) written in ``fmt``."""
    if fmt == "chat":
        return {"messages": msgs}
    if fmt == "prompt_completion":  # the last exchange
        return {"prompt": msgs[-2]["content"], "completion": msgs[-1]["content"]}
    return {
        "systemInstruction": {"parts": [{"text": msgs[0]["content"]}]},
        "contents": [{"role": m["role"], "parts": [{"text": m["content"]}]} for m in msgs[1:]],
    }


def generate(path: Path, size_mb: int, seed: int = 0, fmt: str = "chat") -> int:
    """Writes a JSONL of ``fmt`` examples, about ``size_mb`` MB; returns its size in bytes."""
    rng = random.Random(seed)

    def text(lo: int, hi: int) -> str:
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(lo, hi))).capitalize() + "."
        # Real answers hold colons, quotes and newlines; they exercise the escape and
        # duplicate-key logic that a word soup would not.
        if rng.random() < 0.3:
            words = f'Note: {words}\nSee "Billing" at 10:30.'
        return words

    lines = []
    for _ in range(4000):
        msgs = [{"role": "system", "content": text(5, 20)}]
        for _ in range(rng.randint(1, 3)):
            msgs.append({"role": "user", "content": text(5, 60)})
            msgs.append({"role": "assistant", "content": text(10, 200)})
        lines.append(json.dumps(example(msgs, fmt), ensure_ascii=False) + "\n")
    block = "".join(lines).encode()
    target = size_mb * 1_000_000
    written = 0
    with path.open("wb") as f:
        while written < target:
            part = block[: target - written] if target - written < len(block) else block
            if part is not block:  # end on a whole line
                part = part[: part.rfind(b"\n") + 1] or block[: block.find(b"\n") + 1]
            f.write(part)
            written += len(part)
    return written


def measure(code: str, path: Path, env_extra: dict[str, str]) -> tuple[float, float, float, str]:
    """Runs ``code`` on ``path`` in a child: (wall seconds, CPU seconds, peak RSS in MB, result)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "trainer_image")]))
    env.update(env_extra)
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, env=env, cwd=ROOT
    )
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed with exit code {proc.returncode}")
    seconds, cpu, result = out.strip().split(" ", 2)
    # ru_maxrss is KiB on Linux: the child's own peak, or its largest worker's when it had any.
    rss = max([usage.ru_maxrss, *[int(x) for x in result.split()[2:3]]]) / 1024
    return float(seconds), float(cpu), rss, result


def main(argv: list[str] | None = None) -> int:
    """Generates the data, runs both sides, prints the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--size-mb", type=int, default=200, help="size of the generated JSONL (default 200)"
    )
    ap.add_argument(
        "--dir", type=Path, default=None, help="where to write it (default: a temp dir)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the generated file")
    ap.add_argument(
        "--format", choices=FORMATS, default="chat", help="dataset format (default chat)"
    )
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs per side; the best counts (default 1)"
    )
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="tunestack-bench-", dir=args.dir))
    path = tmp / f"{args.format}.jsonl"
    try:
        t0 = time.perf_counter()
        size = generate(path, args.size_mb, fmt=args.format)
        print(
            f"generated {size / 1e6:,.0f} MB of {args.format} JSONL in "
            f"{time.perf_counter() - t0:.1f} s: {path}"
        )
        # Best of --repeat runs per side, so a busy machine hurts every side alike.
        n = max(2, min(os.cpu_count() or 1, 8))
        sides = [
            ("baseline: stdlib json.loads per line", BASELINE, {}),
            ("ours: full validation (C scanner)", OURS, {"TUNESTACK_VALIDATE_WORKERS": "1"}),
            (
                "ours: without the C scanner",
                OURS,
                {"TUNESTACK_VALIDATE_WORKERS": "1", "TUNESTACK_TEXTSCAN": "0"},
            ),
            (f"ours: C scanner, {n} workers", OURS, {"TUNESTACK_VALIDATE_WORKERS": str(n)}),
            ("(decode only: orjson.loads per line)", ORJSON, {}),
            ("(decode only: msgspec, by block)", MSGSPEC, {"BENCH_FORMAT": args.format}),
        ]
        results = [
            min((measure(code, path, env) for _ in range(args.repeat)), key=lambda m: m[0])
            for _, code, env in sides
        ]
        mb = size / 1e6
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"machine: {os.cpu_count()} CPUs, load average {load}")
        print(f"{'side':<40} {'MB/s':>7} {'MB/s CPU':>9} {'peak RSS MB':>12} {'seconds':>8}")
        for (name, _, _), (secs, cpu, rss, _) in zip(sides, results, strict=True):
            print(f"{name:<40} {mb / secs:>7.1f} {mb / cpu:>9.1f} {rss:>12.0f} {secs:>8.2f}")
        base = results[0]
        for (name, _, _), r in zip(sides[1:4], results[1:4], strict=True):
            print(
                f"{name.split(': ')[1]}: {base[0] / r[0]:.2f}x baseline MB/s (wall), "
                f"{base[1] / r[1]:.2f}x (CPU); target >= 2x; peak RSS {r[2]:.0f} MB (target < 256 MB)"
            )
        print(
            f"lines: {base[3].split()[0]}; ours: examples, tokens (estimated): {' '.join(results[1][3].split()[:2])}"
        )
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
            tmp.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
