"""A local HTTP server that stands in for what we post to: GA4, Yandex Metrica, Telegram and a
CRM's webhook receiver.  It records every request and answers with the statuses a test queues,
then with ``status`` (200 unless the test sets another).  Never the internet."""

from __future__ import annotations

import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Captured:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: bytes
    status: int  # what the server answered


class CaptureServer:
    def __init__(self, status: int = 200):
        self.requests: list[Captured] = []
        self.answers: list[tuple[int, bytes]] = []  # answered first, in order
        self.status = status  # then this, with a small JSON body
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                parsed = urllib.parse.urlsplit(self.path)
                with outer._lock:
                    status, answer = outer.answers.pop(0) if outer.answers else (outer.status, b'{"ok": true}')
                    outer.requests.append(Captured("POST", parsed.path, urllib.parse.parse_qs(parsed.query),
                                                   {k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._closed = False

    def seen(self, status: int | None = None) -> list[Captured]:
        """The requests so far (those answered ``status`` only, when given)."""
        with self._lock:
            return [r for r in self.requests if status is None or r.status == status]

    def close(self) -> None:
        """Stop answering (a receiver that went away); the port is released."""
        if not self._closed:
            self._closed = True
            if self.thread.is_alive():
                self.server.shutdown()
                self.thread.join(5)
            self.server.server_close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.close()
