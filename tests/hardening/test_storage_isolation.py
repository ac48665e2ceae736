"""The storage emulator is reachable only through the door (issue 14, finding 1's residual).

fake-gcs-server takes no token and maps ``..`` names onto its filesystem; on a plain 127.0.0.1
port any local process or a page scanning loopback could have reached it behind the door's
back. These tests look for it the way an attacker would: every listening socket of this
machine's network namespace, and a GCS call to every loopback port.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.doctor.local import LocalStack, _storage
from infra.local import storage, storage_netns
from tests.local.conftest import Server, start_server

CAN_ISOLATE = storage_netns.unshare_command()[0] is not None


def descendants(pid: int) -> list[int]:
    """``pid``'s children, grandchildren, ... (from ``/proc/PID/task/*/children``)."""
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


def emulator_pid(root: int) -> int:
    """The fake-gcs-server process under ``root``."""
    for pid in descendants(root):
        try:
            if (
                "fake-gcs-server"
                in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            ):
                return pid
        except OSError:
            continue
    raise AssertionError(f"no fake-gcs-server under pid {root}")


def listening_ports(table: str = "/proc/net/tcp") -> dict[int, int]:
    """Listening TCP sockets of this network namespace: socket inode -> port."""
    out = {}
    for path in (table, table + "6"):
        try:
            lines = Path(path).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                out[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    return out


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def gcs_answer(port: int) -> tuple[int, bytes] | None:
    """A bucket list without a token, as a scanning page or a local process would send."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
        conn.request("GET", "/storage/v1/b")
        resp = conn.getresponse()
        return resp.status, resp.read(4096)
    except (OSError, http.client.HTTPException):
        return None


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUNESTACK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(storage_netns.ISOLATION_ENV, raising=False)
    return tmp_path / "home"


@pytest.fixture
def isolated(home: Path) -> Iterator[storage.StorageEmulator]:
    emulator = storage.StorageEmulator(isolation="netns")
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


#: For the tests that need a network namespace (the fallback's tests run everywhere).
needs_netns = pytest.mark.skipif(
    not CAN_ISOLATE, reason="this machine cannot create network namespaces"
)


def storage_leaks(server: Server) -> dict[int, tuple[int, bytes]]:
    """Ports of the server's process tree (API, door, emulator, relay) that answer a
    token-less bucket list, found as an attacker would: this namespace's listening sockets,
    then a GCS call to each. (Only the tree's own ports: other tests' servers run too.)"""
    tree = [server.proc.pid, *descendants(server.proc.pid)]
    inodes = set().union(*(socket_inodes(pid) for pid in tree))
    ports = {port for inode, port in listening_ports().items() if inode in inodes}
    door = int(server.storage_url.rsplit(":", 1)[1])
    assert door in ports, (ports, door)
    answers = {port: gcs_answer(port) for port in sorted(ports)}
    assert answers[door] is not None and answers[door][0] == 401
    return {
        port: answer
        for port, answer in answers.items()
        if answer is not None and answer[0] == 200 and b"storage#" in answer[1]
    }


@needs_netns
def test_no_token_storage_answers_on_any_loopback_port(server: Server) -> None:
    assert storage_leaks(server) == {}


@needs_netns
def test_the_servers_emulator_has_no_socket_in_this_namespace(server: Server) -> None:
    pid = emulator_pid(server.proc.pid)
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    relay = next(p for p in descendants(server.proc.pid) if p != pid and pid in descendants(p))
    ours = set(listening_ports())
    assert socket_inodes(pid) & ours == set()
    assert socket_inodes(relay) & ours == set()
    info = json.loads((server.home / "local" / "api.json").read_text())
    assert info["storage_exposed"] == ""


@needs_netns
def test_isolated_emulator_answers_only_over_its_socket(
    isolated: storage.StorageEmulator,
) -> None:
    assert isolated.exposed == "" and isolated.socket is not None
    assert storage.is_up(isolated.url, isolated.socket)
    assert not storage.is_up(isolated.url)  # its port on our 127.0.0.1 is nobody's
    assert gcs_answer(isolated.port) is None
    assert isolated.process is not None
    relay = isolated.process.pid
    assert os.readlink(f"/proc/{relay}/ns/net") != os.readlink("/proc/self/ns/net")


@needs_netns
def test_the_socket_is_private_and_removed_on_stop(home: Path) -> None:
    emulator = storage.StorageEmulator(isolation="netns")
    emulator.start()
    sock = emulator.socket
    assert sock is not None and sock.is_relative_to(home)
    assert sock.stat().st_mode & 0o777 == 0o600
    assert sock.parent.stat().st_mode & 0o777 == 0o700
    assert emulator.process is not None
    pids = [emulator.process.pid, *descendants(emulator.process.pid)]
    emulator.stop()
    assert not sock.exists()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)


@needs_netns
def test_a_long_home_puts_the_socket_in_a_private_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / ("h" * 60) / ("o" * 60)
    monkeypatch.setenv("TUNESTACK_HOME", str(deep))
    emulator = storage.StorageEmulator(isolation="netns")
    emulator.start()
    try:
        sock = emulator.socket
        assert sock is not None and not sock.is_relative_to(deep)
        assert len(os.fsencode(sock)) <= storage_netns.MAX_SOCKET_PATH
        assert sock.parent.stat().st_mode & 0o777 == 0o700
        assert storage.is_up(emulator.url, sock)
    finally:
        emulator.stop()
    assert not sock.parent.exists()


def test_stale_sockets_of_dead_servers_are_swept(home: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = home / "local" / "run"
    run.mkdir(parents=True)
    stale = run / f"gcs-{dead.pid}.sock"
    stale.touch()
    mine = run / f"gcs-{os.getppid()}.sock"  # a live process's: kept
    mine.touch()
    storage_netns.socket_path(home / "local", os.getpid())
    assert not stale.exists() and mine.exists()


@needs_netns
def test_relay_and_emulator_die_with_a_killed_server(home: Path) -> None:
    """kill -9 of the process that started them: neither outlives it (no port, no socket
    relay left serving the emulator's files to whoever finds them)."""
    script = (
        "import sys, time; from infra.local import storage; "
        "e = storage.StorageEmulator(isolation='netns'); e.start(); "
        "print(e.process.pid, flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    assert proc.stdout is not None
    relay = int(proc.stdout.readline())
    emulator = emulator_pid(relay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(
        Path(f"/proc/{p}").exists() and not _zombie(p) for p in (relay, emulator)
    ):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{p}").exists() and not _zombie(p) for p in (relay, emulator))


def test_without_namespaces_it_falls_back_and_says_so(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        storage_netns, "unshare_command", lambda: (None, "cannot create a network namespace")
    )
    emulator = storage.StorageEmulator()
    emulator.start()
    try:
        assert emulator.socket is None
        assert emulator.exposed == "cannot create a network namespace"
        assert storage.is_up(emulator.url)  # on the host's loopback, as the warning says
    finally:
        emulator.stop()
    required = storage.StorageEmulator(isolation="netns")
    with pytest.raises(RuntimeError, match="TUNESTACK_STORAGE_ISOLATION=netns, but cannot"):
        required.start()
    assert required.process is None


def test_an_unknown_isolation_mode_is_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(storage_netns.ISOLATION_ENV, "maybe")
    with pytest.raises(ValueError, match="TUNESTACK_STORAGE_ISOLATION='maybe' is not one of"):
        storage.StorageEmulator()


def test_an_exposed_server_warns_and_doctor_reports_it(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", ["--smoke"], {storage_netns.ISOLATION_ENV: "off"})
    try:
        log = (server.home / "local" / "server.log").read_text()
        assert "warning: the storage emulator listens on http://127.0.0.1:" in log
        assert "TUNESTACK_STORAGE_ISOLATION=off" in log
        info = json.loads((server.home / "local" / "api.json").read_text())
        assert info["storage_exposed"] == "TUNESTACK_STORAGE_ISOLATION=off"
        stack = LocalStack(
            server.api_url, server.storage_url, server.token, info["storage_exposed"]
        )
        result, _ = _storage(stack, "p")
        assert "reachable by any local process" in result.detail
        # The scan that finds nothing on an isolated server finds this one's emulator.
        leaks = storage_leaks(server)
        assert len(leaks) == 1 and f":{next(iter(leaks))}" in log
    finally:
        server.stop()


@needs_netns
def test_doctor_says_the_emulator_is_reachable_only_through_the_door(server: Server) -> None:
    result, _ = _storage(LocalStack(server.api_url, server.storage_url, server.token, ""), "p")
    assert "reachable only through it" in result.detail


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


@needs_netns
def test_a_connection_to_the_relay_before_the_emulator_listens_is_closed(home: Path) -> None:
    """The relay's socket exists before the emulator answers; early callers get a closed
    connection (which the start-up poll retries), never a hang (recv times out in 5 s)."""
    run = home / "local" / "run"
    run.mkdir(parents=True)
    sock = run / "t.sock"
    prefix, _ = storage_netns.unshare_command()
    assert prefix is not None
    relay = subprocess.Popen(
        [
            *prefix,
            sys.executable,
            "-m",
            "infra.local.storage_netns",
            str(sock),
            "9",
            str(os.getpid()),
            "--",
            "sleep",
            "30",
        ]
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(5)
        client.connect(str(sock))
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        # Closed (or reset, as the request went unread): nothing listens on port 9 in there.
        with contextlib.suppress(ConnectionResetError):
            assert client.recv(100) == b""
        client.close()
    finally:
        relay.terminate()
        relay.wait(timeout=10)
    assert not sock.exists()
