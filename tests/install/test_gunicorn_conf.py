"""The units' gunicorn settings come from astertrack's own config (one place for the ports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = ("import json, astertrack.ops.gunicorn_conf as g; "
         "w = g.worker_class if isinstance(g.worker_class, str) else g.worker_class.__mro__[1].__qualname__; "
         "print(json.dumps({'bind': g.bind, 'workers': g.workers, 'threads': g.threads, 'log': g.accesslog, "
         "'worker': w}))")


def settings(tmp_path, app, **env):
    conf = tmp_path / "astertrack.conf"
    conf.write_text("[web]\nlisten_port = 8181\n\n[tracker]\nlisten_host = 0.0.0.0\nlisten_port = 8282\n")
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, env={
        **{k: v for k, v in os.environ.items() if not k.startswith("ASTERTRACK_")},
        "ASTERTRACK_CONFIG": str(conf), "ASTERTRACK_GUNICORN_APP": app, **env})
    return result


def test_bind_follows_the_config(tmp_path):
    web = json.loads(settings(tmp_path, "web").stdout)
    # the admin on the event loop too: its live streams hold no thread, so 8 threads are for pages
    assert web == {"bind": ["127.0.0.1:8181"], "workers": 2, "threads": 8, "log": "-", "worker": "BufferingWorker"}
    tracker = json.loads(settings(tmp_path, "tracker", ASTERTRACK_GUNICORN_WORKERS="3").stdout)
    # the public tracker on the event loop: slow or idle clients cost a socket, not one of its 8 threads
    assert tracker == {"bind": ["0.0.0.0:8282"], "workers": 3, "threads": 8, "log": None, "worker": "BufferingWorker"}


def test_the_tracker_can_go_back_to_gthread(tmp_path):
    tracker = json.loads(settings(tmp_path, "tracker", ASTERTRACK_GUNICORN_WORKER="gthread").stdout)
    assert tracker["worker"] == "gthread"
    result = settings(tmp_path, "tracker", ASTERTRACK_GUNICORN_WORKER="eventlet")
    assert result.returncode != 0 and "must be event or gthread" in result.stderr


def test_unknown_app_is_refused(tmp_path):
    result = settings(tmp_path, "admin")
    assert result.returncode != 0 and "must be web or tracker" in result.stderr
