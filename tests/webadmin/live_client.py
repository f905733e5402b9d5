"""A plain HTTP client of the admin for tests that run a real server: log in as a browser does
(CSRF token, session cookie) and read Server-Sent Events as they arrive."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from urllib.parse import urlencode

from tests.webadmin.seed import PASSWORD

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


class Browser:
    """One user's cookie, over new connections to ``127.0.0.1:port``."""

    def __init__(self, port: int):
        self.port = port
        self.cookie = ""

    def request(self, method: str, path: str, form: dict | None = None,
                timeout: float = 10.0) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Cookie": self.cookie} if self.cookie else {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode()
            cookie = response.getheader("Set-Cookie")
            if cookie:
                self.cookie = cookie.split(";", 1)[0]
            return response.status, {k.lower(): v for k, v in response.getheaders()}, text
        finally:
            conn.close()

    def csrf(self, path: str = "/auth/login") -> str:
        status, _, page = self.request("GET", path)
        match = CSRF_META.search(page)
        assert match, f"no CSRF token on {path} ({status})"
        return match.group(1)

    def login(self, login: str, password: str = PASSWORD) -> Browser:
        token = self.csrf()
        status, headers, _ = self.request("POST", "/auth/login",
                                          {"login": login, "password": password, "csrf_token": token})
        assert status == 302 and "/auth/login" not in headers.get("location", ""), f"login as {login} failed"
        return self

    def logout(self) -> None:
        token = self.csrf("/calls/")
        status, _, _ = self.request("POST", "/auth/logout", {"csrf_token": token})
        assert status == 302

    def stream(self, path: str) -> Stream:
        return Stream(self.port, path, self.cookie)


class Stream:
    """An open SSE response over a raw socket (a read may time out and go on, which http.client's
    file objects do not allow); ``events`` reads what arrives, ``ended_within`` whether the
    server closed it."""

    def __init__(self, port: int, path: str, cookie: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
                          "Accept: text/event-stream\r\n\r\n".encode())
        raw = b""
        while b"\r\n\r\n" not in raw:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed before the answer's head")
            raw += data
        head, self.raw = raw.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        self.chunked = self.headers.get("transfer-encoding") == "chunked"
        self.buffer = ""
        self.closed = False
        self.comments: list[str] = []
        self._decode()

    def _decode(self) -> None:
        """Move whole chunks from ``raw`` to ``buffer``; the last (empty) chunk marks the end."""
        if not self.chunked:
            self.buffer += self.raw.decode()
            self.raw = b""
            return
        while b"\r\n" in self.raw:
            size_line, rest = self.raw.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            if len(rest) < size + 2:
                return
            if size == 0:
                self.closed = True
                return
            self.buffer += rest[:size].decode()
            self.raw = rest[size + 2:]

    def _read(self, deadline: float) -> bool:
        """Read what arrives before ``deadline``; False once the server has ended the stream."""
        if self.closed:
            return False
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        except ConnectionError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.raw += data
        self._decode()
        return not self.closed

    def _blocks(self) -> list[str]:
        *blocks, self.buffer = self.buffer.split("\n\n")
        return blocks

    def events(self, seconds: float, *, until: str | None = None) -> list[tuple[str, dict]]:
        """Events read within ``seconds`` (sooner once one named ``until`` came, or the stream ended)."""
        deadline = time.monotonic() + seconds
        found: list[tuple[str, dict]] = []
        while True:
            alive = self._read(deadline)
            for block in self._blocks():
                fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line
                              and not line.startswith(":"))
                self.comments += [line for line in block.splitlines() if line.startswith((":", "retry:"))]
                if "event" in fields:
                    found.append((fields["event"], json.loads(fields["data"])))
            if not alive or (until and any(name == until for name, _ in found)) or time.monotonic() >= deadline:
                return found

    def ended_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self._read(deadline):
            self._blocks()
        return self.closed

    def close(self) -> None:
        self.sock.close()
