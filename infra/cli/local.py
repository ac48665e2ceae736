"""``tunestack serve``, ``up``, ``down`` and ``demo``: the local Vertex-compatible default.

``serve`` runs the local API and the GCS emulator in the foreground; ``up SPEC --local``
starts (or reuses) them in the background and converges the spec against them with the same
client layer the Pulumi providers use; ``down SPEC --local`` removes what ``up`` created;
``demo`` is ``up specs/local-demo.yaml --local`` on a tiny random model.

Fast start: this module imports nothing heavy at the top. The local API (torch,
transformers) and the converge loop (the Vertex GAPIC client) are imported by the commands
that run them, after their first line is printed; ``down`` with no server running,
``serve --stop`` and ``up`` without ``--local`` never import them.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from infra import catalog
from infra.cli import stacks
from infra.local import daemon
from infra.local.api import settings

DEMO_SPEC = Path(__file__).resolve().parents[2] / "specs" / "local-demo.yaml"


def register(sub: Any) -> None:
    """Adds ``serve``, ``up``, ``down`` and ``demo``."""
    p = sub.add_parser(
        "serve", help="run the local Vertex-compatible API and GCS emulator (foreground)"
    )
    p.add_argument(
        "--port",
        type=int,
        default=settings.DEFAULT_PORT,
        help=f"API port (0: a free one). Default: {settings.DEFAULT_PORT}",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="bind address. Default: 127.0.0.1 (other addresses expose the API to the network)",
    )
    p.add_argument(
        "--storage-port", type=int, default=0, help="GCS emulator port. Default: a free one"
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="train tiny random models in place of catalog models that have no local weights (labelled smoke)",
    )
    p.add_argument(
        "--max-concurrency",
        type=int,
        default=settings.DEFAULT_PREDICT_CONCURRENCY,
        help=f"predictions running at once; more get 429. Default: {settings.DEFAULT_PREDICT_CONCURRENCY}",
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="server-wide cap on max_tokens per request. Default: off (the model's context bounds it)",
    )
    p.add_argument(
        "--generation-timeout",
        type=float,
        default=settings.GENERATION_TIMEOUT_S,
        help=f"wall-clock limit of one generation, seconds. Default: {settings.GENERATION_TIMEOUT_S:g}",
    )
    p.add_argument(
        "--body-limit",
        type=int,
        default=settings.DEFAULT_BODY_LIMIT,
        help=f"largest request body in bytes (413 beyond). Default: {settings.DEFAULT_BODY_LIMIT}",
    )
    p.add_argument(
        "--stop",
        action="store_true",
        help="stop the background server started by `tunestack up --local` and exit",
    )
    p.set_defaults(func=cmd_serve)

    for name, helptext in (
        ("up", "converge a spec: --local runs it on the local API"),
        ("down", "remove what `up` created: --local on the local API"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("spec", type=Path, help="the YAML spec")
        p.add_argument(
            "--local",
            action="store_true",
            help="use the local API and GCS emulator (started in the background when needed)",
        )
        if name == "up":
            p.add_argument(
                "--smoke",
                action="store_true",
                help="start the local API with tiny random base models (when it is not already running)",
            )
            p.add_argument("--no-predict", action="store_true", help="skip the sample prediction")
            p.set_defaults(func=cmd_up)
        else:
            p.add_argument(
                "--delete-buckets",
                action="store_true",
                help="also delete the buckets the spec creates and their objects (never create: false ones). Default: keep them",
            )
            p.add_argument(
                "--force",
                action="store_true",
                help="with --delete-buckets: delete protect: true buckets too (refused without it)",
            )
            p.set_defaults(func=cmd_down)
    p = sub.add_parser(
        "demo",
        help="the whole flow on this machine: up specs/local-demo.yaml --local on a tiny random model",
    )
    p.add_argument("--no-predict", action="store_true", help="skip the sample prediction")
    p.set_defaults(func=cmd_demo)


def cmd_serve(args: argparse.Namespace) -> int:
    """Runs the local API until interrupted (or stops the background one with --stop)."""
    if args.stop:
        pid = daemon.stop()
        print(f"stopped the local API (pid {pid})" if pid else "no local API is running")
        return 0

    config = settings.Settings(
        port=args.port,
        host=args.host,
        storage_port=args.storage_port,
        smoke=args.smoke,
        body_limit=args.body_limit,
        max_tokens=args.max_tokens,
        generation_timeout_s=args.generation_timeout,
        predict_concurrency=args.max_concurrency,
        extra_hosts=() if args.host in ("127.0.0.1", "localhost") else (args.host,),
    )

    def ready(api_url: str, storage_url: str) -> None:
        mode = " (smoke: tiny random base models)" if args.smoke else ""
        print(f"local Vertex AI API on {api_url}{mode}; GCS emulator on {storage_url}", flush=True)

    app = importlib.import_module("infra.local.api.app")
    try:
        app.serve(config, ready)
    except OSError as e:
        print(
            f"error: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr
        )
        return 1
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """``up SPEC --local``: exit 0 converged, 1 invalid spec/data or a failed job/deploy."""
    if not args.local:
        return stacks.print_pulumi_commands(args.spec)
    print(f"up {args.spec} on the local API", flush=True)
    return _run(
        lambda console: _converge().up(args.spec, args.smoke, console, predict=not args.no_predict),
        args.spec,
    )


def cmd_down(args: argparse.Namespace) -> int:
    """``down SPEC --local``: undeploys, deletes endpoints and models, cancels running jobs."""
    if not args.local:
        return stacks.print_pulumi_commands(args.spec, "down")
    if args.force and not args.delete_buckets:
        print("error: --force only applies with --delete-buckets", file=sys.stderr)
        return 2
    print(f"down {args.spec} on the local API", flush=True)
    if args.spec.exists() and daemon.running() is None and not daemon.has_state():
        # Nothing to undo (the same answer converge.down gives), without importing it.
        print("no local API is running and no state is left: nothing is deployed")
        return 0
    return _run(
        lambda console: _converge().down(args.spec, args.delete_buckets, console, force=args.force),
        args.spec,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """``demo``: ``up specs/local-demo.yaml --local --smoke``, then base vs tuned answers."""
    print(f"demo: {DEMO_SPEC.name} on the local API, a tiny random Llama", flush=True)
    outcome: dict[str, Any] = {}

    def step(console: Console) -> None:
        outcome["changes"] = _converge().up(DEMO_SPEC, True, console, predict=False)
        if not args.no_predict:
            outcome["system"] = _demo_answers(console, outcome["changes"])

    code = _run(step, DEMO_SPEC)
    if code == 0:
        spec = (
            DEMO_SPEC.relative_to(Path.cwd()) if DEMO_SPEC.is_relative_to(Path.cwd()) else DEMO_SPEC
        )
        changes = outcome["changes"]
        for job, curve in changes.loss_curves.items():
            print(f"loss curve of {job}: {curve}")
        print("next:")
        print(f"  tunestack status {spec} --local     # jobs, losses, checkpoints, endpoints")
        system = f" --system {shlex.quote(outcome['system'])}" if outcome.get("system") else ""
        for name in changes.endpoints:
            print(
                f"  tunestack chat {name} --spec {spec} --local{system} --temperature 0   # talk to the tuned model (greedy, as above)"
            )
        print(f"  tunestack down {spec} --local       # remove it all")
    return code


def _demo_answers(console: Console, changes: Any) -> str | None:
    """Asks the demo question of the base model and the tuned endpoint; prints both.

    Returns the training examples' system message (the tuned model answers as trained only
    with it, so the suggested ``chat`` command passes it)."""
    demo = importlib.import_module("infra.local.demo")
    trainer = importlib.import_module("infra.local.trainer")
    target_mod = importlib.import_module("infra.vertex.target")
    checks = importlib.import_module("infra.checks")
    spec = checks.validate(DEMO_SPEC, check_datasets=False).spec
    example = demo.find_example(demo.demo_inputs(DEMO_SPEC.parent, spec))
    model = catalog.model(spec.tuning_jobs[0].base_model)
    assert model is not None  # the spec validated
    base_dir = trainer.smoke_model(model.family)
    target = target_mod.Target.local(spec.project.id, spec.project.region)
    with console.status("asking the base model and the tuned endpoint", spinner="dots"):
        base = demo.ask_base(base_dir, example.messages)
        tuned = demo.ask_tuned(target, changes.endpoints[spec.endpoints[0].name], example.messages)
    for line in demo.side_by_side(demo.QUESTION, example.answer, base, tuned):
        console.print(line, markup=False, highlight=False)
    return next((m["content"] for m in example.messages if m["role"] == "system"), None)


def _converge() -> Any:
    """:mod:`infra.local.converge`, imported on first use (the GAPIC client takes ~1.5 s)."""
    return importlib.import_module("infra.local.converge")


def _run(step: Callable[[Console], object], spec: Path) -> int:
    console = Console(soft_wrap=True)
    if not spec.exists():
        print(f"{spec}: error: no such file", file=sys.stderr)
        return 1
    converge = _converge()
    gexc = importlib.import_module("google.api_core.exceptions")
    errors = importlib.import_module("infra.vertex.errors")
    try:
        step(console)
    except (converge.UpError, errors.VertexError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except gexc.GoogleAPICallError as e:
        print(f"error: the local API refused a call: {e.message}", file=sys.stderr)
        return 1
    return 0
