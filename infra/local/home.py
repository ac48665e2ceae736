"""Where the local API keeps its files, and how clients discover it (a public contract).

Layout under ``$TUNESTACK_HOME`` (default ``~/.tunestack``)::

    local/api.json      {"api_url", "storage_url", "pid"}: written by a running server
    local/token         the bearer token (mode 0600), generated on first start
    local/models.json   optional map of catalog model id -> local Hugging Face directory
    local/state/        jobs, endpoints, models and operations as JSON (survive restarts)
    local/logs/         one trainer log per job
    local/gcs/          fake-gcs-server's filesystem backend
    local/cache/        downloaded checkpoints and smoke base models

Any client sending ``Authorization: Bearer <token>`` is accepted.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import signal
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

#: Environment variable naming a JSON file that maps catalog ids to local weights.
MODEL_MAP_ENV = "TUNESTACK_MODEL_MAP"


def home() -> Path:
    """The tunestack home directory (``$TUNESTACK_HOME``, default ``~/.tunestack``)."""
    return Path(os.environ.get("TUNESTACK_HOME") or Path.home() / ".tunestack").expanduser()


def local_dir() -> Path:
    """``$TUNESTACK_HOME/local``, created on demand (mode 0700: it holds the token)."""
    return private_dir(home() / "local")


def private_dir(path: Path) -> Path:
    """Creates ``path`` (and parents) and makes it 0700; returns it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        if stat.S_IMODE(path.stat().st_mode) != 0o700:
            os.chmod(path, 0o700)
    return path


def open_private_log(path: Path) -> BinaryIO:
    """Opens a log for appending, created 0600 (trainer output can quote data and paths)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


def api_file(root: Path | None = None) -> Path:
    """The discovery file a running server writes: ``local/api.json`` (not created here).

    Args:
        root: The tunestack home; None means :func:`home`.
    """
    return (root or home()) / "local" / "api.json"


def token_file(root: Path | None = None) -> Path:
    """The bearer token file: ``local/token`` (mode 0600; not created here).

    Args:
        root: The tunestack home; None means :func:`home`.
    """
    return (root or home()) / "local" / "token"


def read_api_info(root: Path | None = None) -> dict[str, Any]:
    """The parsed ``api.json`` of a server (the only reader of that file).

    Raises:
        FileNotFoundError: no server has written it.
        OSError: it cannot be read.
        ValueError: it is not JSON.
    """
    data = json.loads(api_file(root).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{api_file(root)}: expected a JSON object")
    return data


def read_token(root: Path | None = None) -> str:
    """The bearer token from ``local/token``, stripped (the only reader of that file).

    Raises:
        FileNotFoundError: no server has generated it.
        OSError: it cannot be read.
    """
    return token_file(root).read_text().strip()


def ensure_token() -> str:
    """Returns the bearer token, generating it (mode 0600, never group/world readable) once."""
    path = token_file()
    if path.exists():
        token = read_token()
        if token:
            os.chmod(path, 0o600)
            return token
    private_dir(path.parent)
    token = secrets.token_urlsafe(32)
    # Written atomically and 0600 from the start: never briefly readable, never half written.
    write_private_atomic(path, (token + "\n").encode())
    return token


@dataclass(frozen=True)
class LocalApi:
    """How to reach a running local API.

    Attributes:
        api_url: Base URL of the Vertex REST subset, e.g. ``http://127.0.0.1:8470``.
        storage_url: Base URL of the GCS emulator (``STORAGE_EMULATOR_HOST``).
        token: Bearer token every request must carry.
        pid: Process id of the server, when known.
    """

    api_url: str
    storage_url: str
    token: str
    pid: int | None = None


def discover(root: Path | None = None) -> LocalApi | None:
    """Reads ``api.json`` and the token; None when no server has written them.

    Args:
        root: The tunestack home; None means :func:`home`.
    """
    try:
        data = read_api_info(root)
        token = read_token(root)
    except (OSError, ValueError):
        return None
    return LocalApi(data["api_url"], data["storage_url"], token, data.get("pid"))


def write_api_file(api_url: str, storage_url: str, pid: int, storage_exposed: str = "") -> None:
    """Publishes where the server listens (atomically: readers never see half a file).

    ``storage_exposed`` is why the storage emulator listens on the host's 127.0.0.1 instead of
    its own network namespace ("" when it is isolated).
    """
    info = {"api_url": api_url, "storage_url": storage_url, "pid": pid}
    write_json_atomic(api_file(), {**info, "storage_exposed": storage_exposed})


def write_json_atomic(path: Path, data: object) -> None:
    """Writes JSON (0600) so that a crash or a full disk leaves the old file or the new one."""
    write_private_atomic(path, json.dumps(data, indent=1, sort_keys=True).encode())


def write_private_atomic(path: Path, data: bytes) -> None:
    """Temp file (0600) + fsync + rename + directory fsync: old or new, never torn."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def die_with_parent() -> None:
    """``preexec_fn`` for our children (emulator, trainers): on Linux they get SIGKILL when the
    thread that started them dies (the server, even by kill -9), so nothing is orphaned;
    elsewhere it does nothing. libc is loaded before forking: the child only makes one call."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _load_prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def model_map() -> dict[str, str]:
    """Catalog model id -> local Hugging Face directory.

    Read from the file named by ``$TUNESTACK_MODEL_MAP`` when set, else from
    ``$TUNESTACK_HOME/local/models.json``; empty when neither exists.
    """
    named = os.environ.get(MODEL_MAP_ENV)
    path = Path(named) if named else local_dir() / "models.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as e:
        raise ValueError(f"{path}: not a JSON object of model id -> directory ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of model id -> directory")
    return {str(k): str(v) for k, v in data.items()}
