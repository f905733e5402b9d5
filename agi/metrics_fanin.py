"""One ``/metrics`` and ``/healthz`` for the pre-forked FastAGI workers, on ``[agi] metrics_port``.

Each worker keeps its figures in its own process, so each serves them on a private loopback
port the parent bound before forking.  The public metrics socket is shared by all workers, like
the AGI socket: whichever worker accepts a scrape asks every worker's private port and answers
with the union, each sample labelled ``worker="N"`` (``sum without(worker)`` gives the fleet).
A worker that does not answer shows as ``astertrack_agi_worker_up{worker="N"} 0`` and makes
``/healthz`` fail, so a scrape never silently reports part of the traffic.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from astertrack.ops.metrics import MetricsServer

ASK_TIMEOUT = 2.0
UP_METRIC = "astertrack_agi_worker_up"


class _Merged:
    """A collector that yields families already built (for ``generate_latest``)."""

    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self):
        return iter(self.families)


def merge_expositions(texts: Mapping[int, str | None]) -> bytes:
    """Worker number -> its text exposition (None: it did not answer) -> one exposition.

    A worker whose answer does not parse counts as not answering: one bad worker must not
    cost the scrape the others' figures."""
    families: dict[str, Metric] = {}
    up = Metric(UP_METRIC, "1 if this FastAGI worker answered the scrape, 0 if not", "gauge")
    for worker, text in sorted(texts.items()):
        parsed = None
        if text is not None:
            try:
                parsed = list(text_string_to_metric_families(text))
            except ValueError:
                parsed = None
        up.add_sample(UP_METRIC, {"worker": str(worker)}, 0.0 if parsed is None else 1.0)
        for family in parsed or ():
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                merged.add_sample(sample.name, {**sample.labels, "worker": str(worker)}, sample.value,
                                  sample.timestamp)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged([up, *families.values()]))  # type: ignore[arg-type]
    return generate_latest(registry)


def _ask(port: int, path: str) -> tuple[int, bytes] | None:
    """GET a worker's private endpoint: (status, body), or None if it did not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=ASK_TIMEOUT) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:  # /healthz says 503: still an answer
        return exc.code, exc.read()
    except OSError:
        return None


class FanInServer(MetricsServer):
    """Serves the shared public socket; ``worker_ports`` are the workers' private ports, in order."""

    def __init__(self, sock: socket.socket, worker_ports: list[int]):
        super().__init__(sock.getsockname()[:2], CollectorRegistry(auto_describe=False), {}, sock)
        self.worker_ports = list(worker_ports)
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.worker_ports)), thread_name_prefix="fanin")

    def server_close(self) -> None:
        """The socket belongs to the parent and the other workers: leave it open."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def ask_all(self, path: str) -> dict[int, tuple[int, bytes] | None]:
        """Every worker at once, so one stuck worker costs a scrape ASK_TIMEOUT, not N times that."""
        futures = {worker: self._pool.submit(_ask, port, path) for worker, port in enumerate(self.worker_ports)}
        return {worker: future.result() for worker, future in futures.items()}

    def metrics_answer(self) -> tuple[bytes, str]:
        answers = self.ask_all("/metrics")
        texts = {w: a[1].decode("utf-8", "replace") if a and a[0] == 200 else None for w, a in answers.items()}
        return merge_expositions(texts), CONTENT_TYPE_LATEST

    def health_answer(self) -> tuple[int, dict[str, Any]]:
        workers: dict[str, Any] = {}
        ok = True
        for worker, answer in self.ask_all("/healthz").items():
            if answer is None:
                workers[str(worker)] = {"status": "fail", "error": "no answer"}
                ok = False
                continue
            status, body = answer
            try:
                workers[str(worker)] = json.loads(body)
            except ValueError:
                workers[str(worker)] = {"status": "fail", "error": f"HTTP {status}"}
            ok = ok and status == 200
        return (200 if ok else 503), {"status": "ok" if ok else "fail", "workers": workers}


def start_fanin(sock: socket.socket, worker_ports: list[int]) -> FanInServer:
    """Serve the merged figures from a daemon thread; ``.shutdown()`` on stop."""
    server = FanInServer(sock, worker_ports)
    threading.Thread(target=server.serve_forever, name="metrics-fanin", daemon=True).start()
    return server
