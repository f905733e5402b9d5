"""The event-loop serving of a Flask app (``astertrack.ops.serving``) over real HTTP: the environ
the app sees is gunicorn's, streams are passed on as they are produced and stop when their
client goes, and an app error is a 500, not a dead worker.

A real uvicorn server (the worker's protocol class and app wrapper) runs in a thread on loopback.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from contextlib import contextmanager

import pytest
from flask import Flask, Response, request

from astertrack.ops.serving import BufferedWsgi
from astertrack.samples.processes import asgi_in_thread


@contextmanager
def served(app: Flask, **bounds):
    asgi = BufferedWsgi(app, threads=4, max_body=bounds.get("max_body", 4096),
                        body_timeout=bounds.get("body_timeout", 5.0))
    with asgi_in_thread(asgi, graceful=None) as (_, port, _):
        yield port


@pytest.fixture
def app():
    app = Flask("serving-test")
    app.extensions["events"] = {"second": threading.Event(), "closed": threading.Event()}

    @app.route("/echo/<word>", methods=["GET", "POST"])
    def echo(word):
        env = request.environ
        return {"word": word, "remote": env["REMOTE_ADDR"], "xff": env.get("HTTP_X_FORWARDED_FOR"),
                "length": env.get("CONTENT_LENGTH"), "body": request.get_data(as_text=True),
                "query": request.args.get("q"), "path_info": env["PATH_INFO"]}

    @app.get("/stream")
    def stream():
        events = app.extensions["events"]

        def produce():
            try:
                yield "data: first\n\n"
                events["second"].wait(10)
                while True:  # a live board: an event a tenth of a second until the manager leaves
                    yield "data: more\n\n"
                    time.sleep(0.1)
            finally:
                events["closed"].set()

        return Response(produce(), mimetype="text/event-stream")

    @app.get("/boom")
    def boom():
        raise RuntimeError("broken view")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app


def test_the_app_sees_the_environ_gunicorn_gave_it(app):
    with served(app) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.putrequest("POST", "/echo/caf%C3%A9?q=%D1%8F", skip_accept_encoding=True)
        conn.putheader("X-Forwarded-For", "203.0.113.7")
        conn.putheader("X_Forwarded_For", "6.6.6.6")  # would read as the same variable: dropped
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        conn.send(b"5\r\nhello\r\n0\r\n\r\n")
        answer = json.loads(conn.getresponse().read())
    # the peer, not a header (the apps decide about X-Forwarded-For); a chunked body has its length
    assert answer == {"word": "café", "remote": "127.0.0.1", "xff": "203.0.113.7", "length": "5",
                      "body": "hello", "query": "я", "path_info": "/echo/caf\u00c3\u00a9"}


def test_a_stream_is_sent_as_produced_and_stops_when_its_client_goes(app):
    events = app.extensions["events"]
    with served(app) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while b"data: first" not in received:
                received += sock.recv(4096)  # arrives while the view is still waiting
            assert received.startswith(b"HTTP/1.1 200 ") and b"transfer-encoding: chunked" in received.lower()
            events["second"].set()
            while b"data: more" not in received:
                received += sock.recv(4096)
        # the client has gone: the generator is closed instead of producing for ever on a thread
        assert events["closed"].wait(5)


def test_an_app_error_is_a_500_and_the_server_goes_on(app):
    with served(app) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/boom")
        assert conn.getresponse().status == 500
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/echo/ok")
        assert json.loads(conn.getresponse().read())["word"] == "ok"
