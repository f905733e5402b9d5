"""What the admin's real-browser tests share: the app behind a real threaded HTTP server, a
Chromium page that records script errors, and logging in through the login form."""

from __future__ import annotations

import re
import threading

from werkzeug.serving import make_server

from tests.webadmin.seed import PASSWORD

# A refused request the test makes on purpose (a form answered 400) is logged by Chromium as
# "Failed to load resource"; anything else on the console (a script error, a blocked script or
# style under the Content-Security-Policy) is an error of the page.
_EXPECTED_REFUSAL = re.compile(r"^Failed to load resource: the server responded with a status of 4\d\d")


class ServerThread:
    """A werkzeug server in a thread: the same WSGI stack as production, minus gunicorn."""

    def __init__(self, app, host: str = "127.0.0.1"):
        self.server = make_server(host, 0, app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.thread.join(5)


def open_page(browser, locale: str = "en-US"):
    """(context, page): ``page.errors`` collects the page's script errors and console errors."""
    context = browser.new_context(viewport={"width": 1360, "height": 900}, locale=locale)
    page = context.new_page()
    page.errors = []
    page.on("console", lambda msg: page.errors.append(msg.text)
            if msg.type == "error" and not _EXPECTED_REFUSAL.match(msg.text) else None)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    return context, page


def login(page, base: str, user: str = "admin", password: str = PASSWORD) -> None:
    page.goto(f"{base}/auth/login")
    page.fill("#login", user)
    page.fill("#password", password)
    page.click("#login-button")
    page.wait_for_load_state()
    assert "/auth/login" not in page.url
