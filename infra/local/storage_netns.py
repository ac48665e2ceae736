"""The storage emulator in a network namespace of its own, reachable only through a Unix socket.

fake-gcs-server has no credentials and maps object names onto its filesystem, and it can only
listen on TCP: on the host's 127.0.0.1 any local process (the port is in ``/proc/net/tcp``) or
a web page scanning loopback ports could reach it behind the door's back. So, where Linux lets
an unprivileged user create namespaces, it runs under ``unshare --user --map-root-user --net``:
its 127.0.0.1 is a loopback of its own, which nothing outside can connect to. This module's
``main`` is the process inside: it brings that loopback up, starts the emulator, and relays a
Unix socket (mode 0600 in a 0700 directory, created before the emulator starts) to it. The
storage door, and nothing else, connects to that socket.

Where namespaces are not available (macOS, a kernel or container that forbids them),
:func:`unavailable` says why and the server falls back to a private 127.0.0.1 port with a
warning; ``TUNESTACK_STORAGE_ISOLATION=netns`` makes that an error instead, ``off`` skips the
namespace (tests that drive the bare emulator).

This file runs inside the namespace as ``python -m infra.local.storage_netns``: the standard
library and :mod:`infra.local.home` (itself stdlib-only) only, so it starts fast and imports
nothing of the server's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from infra.local import home

#: Environment variable: ``auto`` (default: the namespace where available, else a warning and
#: a private 127.0.0.1 port), ``netns`` (the namespace or an error), ``off`` (no namespace).
ISOLATION_ENV = "TUNESTACK_STORAGE_ISOLATION"
ISOLATION_MODES = ("auto", "netns", "off")
#: The ``unshare`` invocations tried, in order: an unprivileged user namespace, then (for
#: root in a container that forbids user namespaces) a network namespace alone.
UNSHARE_FLAGS = (("--user", "--map-root-user", "--net"), ("--net",))
#: Longest Unix socket path (``sun_path`` holds 108 bytes with the terminating NUL).
MAX_SOCKET_PATH = 107
#: Bytes moved per ``splice`` call.
CHUNK = 256 * 1024

_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def mode(value: str | None = None) -> str:
    """``value``, or the isolation mode from :data:`ISOLATION_ENV` when None; raises
    ValueError on an unknown mode."""
    what = "isolation" if value is not None else ISOLATION_ENV
    if value is None:
        value = os.environ.get(ISOLATION_ENV, "auto").strip().lower() or "auto"
    if value not in ISOLATION_MODES:
        raise ValueError(f"{what}={value!r} is not one of {', '.join(ISOLATION_MODES)}")
    return value


def unshare_command() -> tuple[list[str] | None, str]:
    """The ``unshare`` prefix that works here, or None and why none does.

    Each candidate is tried with ``true``: a kernel, a seccomp profile or a sysctl
    (``kernel.unprivileged_userns_clone``, ``user.max_user_namespaces``) can forbid it.
    """
    exe = shutil.which("unshare")
    if exe is None:
        return None, "the unshare command (util-linux) is not installed"
    why = ""
    for flags in UNSHARE_FLAGS:
        if "--user" not in flags and os.geteuid() != 0:
            continue
        try:
            probe = subprocess.run(
                [exe, *flags, "--", "true"], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            why = f"unshare failed to run ({e})"
            continue
        if probe.returncode == 0:
            return [exe, *flags, "--"], ""
        why = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
    return None, f"cannot create a network namespace ({why})"


def socket_path(local_dir: Path, pid: int) -> tuple[Path, Path | None]:
    """Where the relay listens: ``local/run/gcs-PID.sock``, or a private temporary directory
    when that path is too long for a Unix socket. Returns the path and the directory to
    remove afterwards (None for the home's own)."""
    run = local_dir / "run"
    path = run / f"gcs-{pid}.sock"
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        run.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(run, 0o700)
        sweep(run)
        return path, None
    import tempfile  # noqa: PLC0415 - rare path

    tmp = Path(tempfile.mkdtemp(prefix="tunestack-gcs-"))  # mode 0700
    return tmp / "gcs.sock", tmp


def sweep(run: Path) -> list[Path]:
    """Removes the sockets of servers that are gone (a server killed with SIGKILL leaves one)."""
    removed = []
    for stale in run.glob("gcs-*.sock"):
        pid = stale.name[4:-5]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
            removed.append(stale)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- inside the namespace -------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m infra.local.storage_netns SOCKET PORT PARENT_PID -- EMULATOR ARGS...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 5 or args[3] != "--":
        print("usage: storage_netns SOCKET PORT PARENT_PID -- COMMAND...", file=sys.stderr)
        return 2
    path, port, parent, command = Path(args[0]), int(args[1]), int(args[2]), args[4:]
    _die_with(parent)
    _loopback_up()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a socket left by a relay killed with SIGKILL
    old = os.umask(0o177)
    try:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(128)
    finally:
        os.umask(old)
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=home.die_with_parent)
    try:
        return _relay(listener, port, child)
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        child.wait()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _relay(listener: socket.socket, port: int, child: subprocess.Popen[bytes]) -> int:
    """Relays each connection on ``listener`` to the emulator's port until SIGTERM/SIGINT or
    the emulator's exit; then stops the emulator (SIGTERM, SIGKILL after 5 s)."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def watch() -> None:
        child.wait()
        stop.set()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_connection, args=(client, port), daemon=True).start()

    threading.Thread(target=watch, daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    while not stop.wait(0.5):
        pass
    listener.close()
    if child.poll() is None:
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
    return child.returncode if child.returncode is not None and child.returncode > 0 else 0


def _connection(client: socket.socket, port: int) -> None:
    """One relayed connection: a thread per direction; when either side is done, so is the
    connection (HTTP never half-closes)."""
    try:
        upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
        upstream.settimeout(None)
    except OSError:
        client.close()
        return
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copies ``src`` to ``dst`` in the kernel (``splice`` through a pipe) until EOF or an
    error, then shuts both sockets down so the other direction's pump ends too."""
    r, w = os.pipe()
    try:
        while n := os.splice(src.fileno(), w, CHUNK):
            while n:
                n -= os.splice(r, dst.fileno(), n)
    except OSError:
        pass
    finally:
        os.close(r)
        os.close(w)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _loopback_up() -> None:
    """``ip link set lo up`` without iproute2: a new network namespace starts with lo down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def _die_with(parent: int) -> None:
    """Dies with the server. Entering a user namespace clears the parent-death signal the
    server set before ``unshare``, so it is set again here; a server already gone meanwhile
    (we were re-parented) means exit now."""
    home.die_with_parent()
    if os.getppid() != parent:
        os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
