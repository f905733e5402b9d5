"""gunicorn settings read from astertrack's own config, so the units never repeat ports.

Used by the systemd units: ``gunicorn --config python:astertrack.ops.gunicorn_conf 'webadmin:create_app()'``
with ``ASTERTRACK_GUNICORN_APP=web`` (or ``tracker``).  Change ``[web] listen_port`` in
/etc/astertrack and restart the unit; nothing else needs editing.

Both apps run on the event-loop worker of ``astertrack.ops.serving``: slow or idle clients cost
a socket, not a thread (issue #20), and the admin's live board and pop-up streams are answered
in the event loop by ``webadmin.live.streams`` with one shared poller per worker, so hundreds of
open streams hold no request thread (issue #21).  Environment
overrides, for a unit drop-in or a benchmark: ``ASTERTRACK_GUNICORN_WORKER`` (``event`` or
``gthread``), ``ASTERTRACK_GUNICORN_WORKERS``, ``ASTERTRACK_GUNICORN_THREADS``,
``ASTERTRACK_GUNICORN_HEADER_TIMEOUT`` and ``ASTERTRACK_GUNICORN_BODY_TIMEOUT`` (seconds a client
has to send a request's head, then its body), ``ASTERTRACK_GUNICORN_MAX_CONNECTIONS`` (per worker).
The admin still works on gthread, but its live streams are then one-shot answers that the
browser asks for again every second.
"""

from __future__ import annotations

import os

from astertrack.config import load_config

_app = os.environ.get("ASTERTRACK_GUNICORN_APP", "web")
if _app not in ("web", "tracker"):
    raise SystemExit(f"ASTERTRACK_GUNICORN_APP must be web or tracker, not {_app!r}")
_section = load_config().values[_app]

bind = [f"{_section['listen_host']}:{_section['listen_port']}"]
workers = int(os.environ.get("ASTERTRACK_GUNICORN_WORKERS", "2"))
# Threads that run the app in each worker, held only while a complete request runs (the live
# streams hold none under the event worker; under gthread each open stream would hold one).
threads = int(os.environ.get("ASTERTRACK_GUNICORN_THREADS", "8"))
timeout = 60
graceful_timeout = 20
_worker = os.environ.get("ASTERTRACK_GUNICORN_WORKER", "event")
if _worker == "event":
    from astertrack.ops.serving import worker_class as _event_worker

    worker_class = _event_worker(
        max_body=_section["max_body_bytes"] if _app == "tracker" else 16 * 1024 * 1024,
        header_timeout=float(os.environ.get("ASTERTRACK_GUNICORN_HEADER_TIMEOUT", "10")),
        body_timeout=float(os.environ.get("ASTERTRACK_GUNICORN_BODY_TIMEOUT", "10")),
        max_connections=int(os.environ.get("ASTERTRACK_GUNICORN_MAX_CONNECTIONS", "10000")),
        graceful_timeout=graceful_timeout)
elif _worker == "gthread":
    worker_class = "gthread"
else:
    raise SystemExit(f"ASTERTRACK_GUNICORN_WORKER must be event or gthread, not {_worker!r}")
# Behind a reverse proxy on the same host; the apps decide themselves whether to trust
# X-Forwarded-For ([tracker] trust_forwarded_for).
forwarded_allow_ips = "127.0.0.1,::1"
# stdout -> journald under systemd; the tracker's heartbeats would flood the journal, so no access log there
accesslog = "-" if _app == "web" else None
errorlog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
proc_name = f"astertrack-{_app}"
# gunicorn 27+ opens a control socket in $HOME; the web and tracker processes would share one
# path, and the units' home is read-only.  Older gunicorn ignores this setting.
control_socket_disable = True
