"""``tunestack serve``, ``up``, ``down`` and ``demo``: the local Vertex-compatible default.

``serve`` runs the local API and the GCS emulator in the foreground; ``up SPEC --local``
starts (or reuses) them in the background and converges the spec against them with the same
client layer the Pulumi providers use; ``down SPEC --local`` removes what ``up`` created;
``demo`` is ``up specs/local-demo.yaml --local`` on a tiny random model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from infra.local import daemon, server

DEMO_SPEC = Path(__file__).resolve().parents[2] / "specs" / "local-demo.yaml"


def register(sub: Any) -> None:
    """Adds ``serve``, ``up``, ``down`` and ``demo``."""
    p = sub.add_parser(
        "serve", help="run the local Vertex-compatible API and GCS emulator (foreground)"
    )
    p.add_argument(
        "--port",
        type=int,
        default=server.DEFAULT_PORT,
        help=f"API port (0: a free one). Default: {server.DEFAULT_PORT}",
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
        default=server.DEFAULT_PREDICT_CONCURRENCY,
        help=f"predictions running at once; more get 429. Default: {server.DEFAULT_PREDICT_CONCURRENCY}",
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        default=server.MAX_TOKENS_CAP,
        help=f"largest max_tokens per instance. Default: {server.MAX_TOKENS_CAP}",
    )
    p.add_argument(
        "--body-limit",
        type=int,
        default=server.DEFAULT_BODY_LIMIT,
        help=f"largest request body in bytes (413 beyond). Default: {server.DEFAULT_BODY_LIMIT}",
    )
    p.add_argument(
        "--stop",
        action="store_true",
        help="stop the background server started by `tunestack up --local` and exit",
    )
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Runs the local API until interrupted (or stops the background one with --stop)."""
    if args.stop:
        pid = daemon.stop()
        print(f"stopped the local API (pid {pid})" if pid else "no local API is running")
        return 0
    settings = server.Settings(
        port=args.port,
        host=args.host,
        storage_port=args.storage_port,
        smoke=args.smoke,
        body_limit=args.body_limit,
        max_tokens=args.max_tokens,
        predict_concurrency=args.max_concurrency,
        extra_hosts=() if args.host in ("127.0.0.1", "localhost") else (args.host,),
    )

    def ready(api_url: str, storage_url: str) -> None:
        mode = " (smoke: tiny random base models)" if args.smoke else ""
        print(f"local Vertex AI API on {api_url}{mode}; GCS emulator on {storage_url}", flush=True)

    try:
        server.serve(settings, ready)
    except OSError as e:
        print(
            f"error: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr
        )
        return 1
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
