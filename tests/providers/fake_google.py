"""A scriptable JSON server on 127.0.0.1 for the non-Vertex Google APIs the providers call.

IAM, Service Usage and Cloud Build answers in tests come from :func:`serve_json`; Vertex AI is
never faked: provider tests run the real local API (see ``conftest.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Answers one request: (handler, raw body) -> (status, JSON text).
Respond = Callable[[BaseHTTPRequestHandler, bytes], tuple[int, str]]


def send_json(handler: BaseHTTPRequestHandler, status: int, data: bytes) -> None:
    """Answers ``data`` as JSON; a client killed mid-request (what crash tests do) is fine."""
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


@contextmanager
def serve_json(respond: Respond) -> Iterator[str]:
    """Serves ``respond`` (a small fake Google REST API) on a free 127.0.0.1 port.

    Yields ``"http://127.0.0.1:PORT"``; the server stops when the block ends.
    """

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, text = respond(self, body)
            data = text.encode()
            send_json(self, status, data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
