"""``tunestack logs JOB [--follow] [--local]``: a job's trainer log.

Local jobs: the log the local API's scheduler writes (``$TUNESTACK_HOME/local/logs/``), read
from disk, so it also works after the server stopped; ``--follow`` prints new lines until the
job ends (Ctrl-C stops, exit 130). Vertex jobs: their logs are in Cloud Logging, which the
Vertex client does not read; the command prints the exact ``gcloud logging read`` line.

JOB is a job resource name (``projects/.../tuningJobs/ID``), ``tuningJobs/ID`` or the bare ID.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from infra import catalog
from infra.local import home

#: Lines printed before following (the last N of the log).
DEFAULT_TAIL = 200
#: Most lines ``--tail`` accepts.
MAX_TAIL = 100_000
#: Seconds between reads while following.
FOLLOW_INTERVAL_S = 0.5
COLLECTIONS = ("tuningJobs", "customJobs")
_NAME = re.compile(
    r"(?:projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/)?"
    r"(?:(?P<collection>tuningJobs|customJobs)/)?(?P<id>[0-9A-Za-z_-]{1,128})"
)


class LogsError(Exception):
    """A user error: one line, exit 1."""


def register(sub: Any) -> None:
    """Adds ``logs``."""
    p = sub.add_parser("logs", help="print a job's trainer log (--follow: until it ends)")
    p.add_argument("job", help="job resource name, tuningJobs/ID, customJobs/ID or the bare ID")
    p.add_argument("--local", action="store_true", help="a job of the local API")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    p.add_argument(
        "--tail",
        type=int,
        default=DEFAULT_TAIL,
        help=f"print the last N lines first (0: all, at most {MAX_TAIL}). Default: {DEFAULT_TAIL}",
    )
    p.set_defaults(func=cmd_logs)


def cmd_logs(args: argparse.Namespace) -> int:
    """Exit 0 after printing, 1 on an unknown job, 130 on Ctrl-C while following."""
    m = _NAME.fullmatch(args.job.strip())
    if m is None:
        print(f"error: {args.job!r} is not a job name or id", file=sys.stderr)
        return 1
    if not 0 <= args.tail <= MAX_TAIL:
        print(f"error: --tail must be between 0 and {MAX_TAIL}", file=sys.stderr)
        return 1
    if not args.local:
        print(
            cloud_hint(
                m.group("project"), m.group("location"), m.group("collection"), m.group("id")
            )
        )
        return 0
    try:
        path, collection = find_log(m.group("collection"), m.group("id"))
        _print_tail(path, args.tail)
        if args.follow:
            _follow(path, collection, m.group("id"))
    except LogsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def find_log(collection: str | None, rid: str) -> tuple[Path, str]:
    """The local log file of job ``rid`` (in ``collection``, or whichever has it)."""
    logs = home.local_dir() / "logs"
    for c in (collection,) if collection else COLLECTIONS:
        path = logs / f"{c}-{rid}.log"
        if path.exists() or _state_file(c, rid).exists():
            return path, c
    raise LogsError(
        f"no local job {rid} (its log would be in {logs}); `tunestack status SPEC --local` lists jobs"
    )


def cloud_hint(project: str | None, location: str | None, collection: str | None, rid: str) -> str:
    """Where a Vertex job's log is, as the exact command to read it."""
    proj = project or "PROJECT"
    query = f'resource.type="ml_job" AND resource.labels.job_id="{rid}"'
    lines = [
        "Vertex AI writes training logs to Cloud Logging, which tunestack does not read; run:",
        f"  gcloud logging read '{query}' --project {proj} --limit 200 --order asc",
    ]
    if collection != "customJobs":
        region = location or "REGION"
        lines.append(
            f"  (managed tuning jobs: https://console.cloud.google.com/vertex-ai/generative/"
            f"language/locations/{region}/tuning?project={proj})"
        )
    return "\n".join(lines)


def _state_file(collection: str, rid: str) -> Path:
    return home.local_dir() / "state" / collection / f"{rid}.json"


def _print_tail(path: Path, tail: int) -> None:
    if not path.exists():
        return
    lines = path.read_bytes().decode(errors="replace").splitlines()
    for line in lines[-tail:] if tail else lines[-MAX_TAIL:]:
        print(line)
    sys.stdout.flush()


def _follow(path: Path, collection: str, rid: str) -> None:
    offset = path.stat().st_size if path.exists() else 0
    while True:
        done = _job_state(collection, rid) in catalog.TERMINAL_JOB_STATES
        if path.exists():
            with path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            offset += len(chunk)
            if chunk:
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
        if done:
            return
        time.sleep(FOLLOW_INTERVAL_S)


def _job_state(collection: str, rid: str) -> str | None:
    try:
        data = json.loads(_state_file(collection, rid).read_text())
    except (OSError, ValueError):
        return None
    state = data.get("resource", {}).get("state") if isinstance(data, dict) else None
    return state if isinstance(state, str) else None
