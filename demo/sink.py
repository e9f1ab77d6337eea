"""A local HTTP sink standing in for a notification service: Apprise's ``json://127.0.0.1:PORT/PATH``
posts each message here. The sink keeps what it received, can be taken down (connections refused)
and brought back on the same port, and can hang (accept, never answer) to play a dead endpoint.

Standard library only: ``make demo`` gives Som a sink (demo.run_demo), and the notification tests
use it through tests/support/sink.py."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ID = re.compile(r"\[([a-z_]+-[0-9a-f]{12}) ")


class Sink:
    def __init__(self, path: str = "hook-X7Q2") -> None:
        self.path = path
        self.received: list[dict[str, Any]] = []
        self.hang = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/{self.path}"

    def start(self) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if sink.hang.is_set():
                    sink.release.wait(60)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink._lock:
                    sink.received.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.received)

    def ids(self) -> list[str]:
        out = []
        for m in self.messages():
            found = ID.search(str(m.get("message", "")))
            out.append(found.group(1) if found else "?")
        return out

    def texts(self) -> list[str]:
        return [str(m.get("message", "")) for m in self.messages()]
