"""Starting, finding and stopping the background ``tunestack serve`` used by ``up --local``.

The daemon is a detached ``tunestack serve`` process: its pid is in ``local/server.pid`` and
in ``local/api.json``; its output goes to ``local/server.log``. A second ``up`` reuses it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from infra import catalog, wait
from infra.local import home

# infra.cli has no __main__ module; this is the console script's body.
_ENTRY = "import sys; from infra.cli import run; sys.exit(run())"


class DaemonError(RuntimeError):
    """The local API could not be started or reached."""


def status(api: home.LocalApi, timeout: float = 2.0) -> dict[str, Any] | None:
    """The running server's ``/local/v1/status`` answer, or None when it does not answer."""
    req = urllib.request.Request(
        f"{api.api_url}/local/v1/status", headers={"Authorization": f"Bearer {api.token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return dict(json.loads(resp.read()))
    except (OSError, ValueError, urllib.error.URLError):
        return None


def running() -> tuple[home.LocalApi, dict[str, Any]] | None:
    """The local API recorded in ``api.json`` when it is alive and answers our token."""
    api = home.discover()
    if api is None:
        return None
    info = status(api)
    return (api, info) if info is not None else None


def has_state(root: Path | None = None) -> bool:
    """True when the local state holds an endpoint, a model or a job that is not finished.

    Read from the files directly (the server may be stopped); unreadable files count as
    state, so that a start moves them aside and says so.
    """
    state = (root or home.home()) / "local" / "state"
    for collection in ("endpoints", "models"):
        if any((state / collection).glob("*.json")):
            return True
    for collection in ("tuningJobs", "customJobs"):
        for path in (state / collection).glob("*.json"):
            try:
                job = json.loads(path.read_text())["resource"]
                if job.get("state") not in catalog.TERMINAL_JOB_STATES:
                    return True
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return True
    return False


def ensure(smoke: bool, timeout: float = 60.0) -> tuple[home.LocalApi, bool]:
    """Reuses the running local API or starts one in the background.

    Args:
        smoke: Start it with ``--smoke`` (a running one without smoke mode is an error).
        timeout: Seconds to wait for a new server to answer.

    Returns:
        The API and whether this call started it.

    Raises:
        DaemonError: when it cannot start, or a running one has the other smoke setting.
    """
    found = running()
    if found is not None:
        api, info = found
        if smoke and not info.get("smoke"):
            raise DaemonError(
                f"a local API without --smoke is running (pid {info.get('pid')}): "
                "stop it with `tunestack serve --stop`, then re-run"
            )
        return api, False
    proc, api = spawn(["--smoke"] if smoke else [], timeout=timeout)
    home.write_private_atomic(home.local_dir() / "server.pid", f"{proc.pid}\n".encode())
    return api, True


def spawn(
    args: list[str], timeout: float = 60.0, env: dict[str, str] | None = None, detach: bool = True
) -> tuple[subprocess.Popen[bytes], home.LocalApi]:
    """Starts ``tunestack serve --port 0 ARGS`` in the background and waits until it answers.

    Args:
        args: Extra ``serve`` arguments.
        timeout: Seconds to wait for ``api.json`` and a status answer.
        env: Environment of the server (default: ours). Its ``TUNESTACK_HOME`` must be ours.
        detach: Run it in its own session, so Ctrl-C in the caller's terminal spares it.

    Returns:
        The process and how to reach it.

    Raises:
        DaemonError: when it exits or does not answer in time.
    """
    log = home.open_private_log(home.local_dir() / "server.log")
    cmd = [sys.executable, "-c", _ENTRY, "serve", "--port", "0", *args]
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=detach,
        env=env,
    )

    def ready() -> home.LocalApi | None:
        if proc.poll() is not None:
            raise DaemonError(f"tunestack serve exited with code {proc.returncode}; see {log.name}")
        api = home.discover()
        return api if api is not None and api.pid == proc.pid and status(api) is not None else None

    def expired(_: object) -> DaemonError:
        proc.kill()
        return DaemonError(f"tunestack serve did not answer within {timeout:.0f}s; see {log.name}")

    api = wait.poll(ready, bool, timeout, expired, initial_delay=0.2, max_delay=0.2)
    assert api is not None  # poll returns only what ``bool`` accepts
    return proc, api


def stop(timeout: float = 20.0) -> int | None:
    """Stops the background server (SIGTERM, SIGKILL after ``timeout``); returns its pid."""
    found = running()
    pid = found[1].get("pid") if found else None
    if pid is None:
        try:
            pid = int((home.local_dir() / "server.pid").read_text().strip())
        except (OSError, ValueError):
            return None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return None

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return _is_zombie(pid)

    try:
        wait.poll(gone, bool, timeout, lambda _: TimeoutError(), initial_delay=0.1, max_delay=0.1)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
    (home.local_dir() / "server.pid").unlink(missing_ok=True)
    return pid


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False
