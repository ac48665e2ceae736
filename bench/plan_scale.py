"""How `tunestack plan` scales: synthetic specs of 10, 100 and 1000 tuning jobs.

Each size runs in its own subprocess (so peak RSS is that size's alone): a spec with N jobs,
N/10 buckets, N/10 datasets (small local files) and N/10 endpoints is validated, planned (the
pure layer) and run through the real program under Pulumi's mocks, exactly as
``tunestack plan`` does. Prints seconds per phase and peak RSS per size, then the growth factor
of the total time against the linear ideal (target: 1000 jobs <= 12x the time of 100).

    .venv/bin/python bench/plan_scale.py [--sizes 10 100 1000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROW = {
    "messages": [
        {"role": "user", "content": "What does the widget do?"},
        {"role": "assistant", "content": "It makes other widgets."},
    ]
}


def synthetic_spec(folder: Path, jobs: int, lanes: int = 4) -> Path:
    """Writes a spec of ``jobs`` jobs with buckets, datasets and endpoints in proportion,
    ``lanes`` jobs running at a time (``project.max_concurrent_tuning_jobs``)."""
    groups = max(1, jobs // 10)
    for g in range(groups):
        (folder / f"d{g}.jsonl").write_text("".join(json.dumps(ROW) + "\n" for _ in range(20)))
    spec = {
        "project": {
            "id": "bench-project",
            "region": "us-central1",
            "max_concurrent_tuning_jobs": 4,
        },
        "buckets": [{"name": f"bench-bucket-{g}", "protect": g == 0} for g in range(groups)],
        "datasets": [
            {"name": f"d{g}", "train": f"d{g}.jsonl", "bucket": f"bench-bucket-{g}"}
            for g in range(groups)
        ],
        "tuning_jobs": [
            {
                "name": f"job-{i}",
                "base_model": "google/gemma3@gemma-3-1b-it",
                "tuning_mode": "FULL",
                "epochs": 2,
                "dataset": f"d{i % groups}",
                "output_uri": f"gs://bench-bucket-{i % groups}/runs/job-{i}",
            }
            for i in range(jobs)
        ],
        "endpoints": [
            {"name": f"ep-{g}", "model": f"job-{g * 10}", "machine_type": "g2-standard-8"}
            for g in range(groups)
        ],
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def child(jobs: int, lanes: int) -> None:
    """Measures one size; prints one JSON line."""
    from infra.checks import validate
    from infra.emit.offline import run_offline
    from infra.plan import build_plan

    with tempfile.TemporaryDirectory() as tmp:
        spec = synthetic_spec(Path(tmp), jobs, lanes)
        t0 = time.perf_counter()
        report = validate(spec)
        assert report.ok, [d.format() for d in report.diagnostics][:5]
        t1 = time.perf_counter()
        assert report.spec is not None
        plan = build_plan(report.spec, report, spec)
        plan.order()
        t2 = time.perf_counter()
        offline = run_offline(spec, report)
        doc = json.dumps(offline.to_json())
        t3 = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "jobs": jobs,
                "lanes": lanes,
                "resources": len(offline.resources),
                "validate_s": t1 - t0,
                "plan_s": t2 - t1,
                "program_s": t3 - t2,
                "total_s": t3 - t0,
                "peak_rss_mb": peak_mb,
                "json_bytes": len(doc),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument(
        "--lanes", type=int, default=4, help="max_concurrent_tuning_jobs (default 4)"
    )
    parser.add_argument(
        "--sequential-sizes",
        type=int,
        nargs="*",
        default=[100, 1000],
        help="sizes also run with the default quota chain (one job at a time); none to skip",
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.lanes)
        return
    table(f"{args.lanes} jobs at a time", [measure(n, args.lanes) for n in args.sizes])
    if args.sequential_sizes:
        table(
            "one job at a time (the default quota chain)",
            [measure(n, 1) for n in args.sequential_sizes],
        )


def measure(jobs: int, lanes: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(jobs), "--lanes", str(lanes)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(
        f"{'jobs':>6} {'resources':>9} {'validate s':>10} {'plan s':>8} {'program s':>9} "
        f"{'total s':>8} {'peak RSS MB':>11} {'ms/resource':>11}"
    )
    for r in rows:
        print(
            f"{r['jobs']:>6} {r['resources']:>9} {r['validate_s']:>10.3f} {r['plan_s']:>8.3f} "
            f"{r['program_s']:>9.2f} {r['total_s']:>8.2f} {r['peak_rss_mb']:>11.0f} "
            f"{1000 * r['total_s'] / r['resources']:>11.1f}"
        )
    for a, b in zip(rows, rows[1:], strict=False):
        size = b["jobs"] / a["jobs"]
        growth = b["total_s"] / a["total_s"]
        mine = (b["plan_s"] + b["program_s"]) / (a["plan_s"] + a["program_s"])
        target = ""
        if (a["jobs"], b["jobs"]) == (100, 1000):
            target = " (target <= 12x: " + ("ok)" if growth <= 12 else "OVER)")
        print(
            f"{a['jobs']} -> {b['jobs']} jobs ({size:.0f}x, linear would be x{size:.0f}): "
            f"total x{growth:.1f}{target}; validate x{b['validate_s'] / a['validate_s']:.1f}, "
            f"plan+program x{mine:.1f}, peak RSS x{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}"
        )


if __name__ == "__main__":
    main()
