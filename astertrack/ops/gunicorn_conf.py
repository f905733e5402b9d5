"""gunicorn settings read from astertrack's own config, so the units never repeat ports.

Used by the systemd units: ``gunicorn --config python:astertrack.ops.gunicorn_conf 'webadmin:create_app()'``
with ``ASTERTRACK_GUNICORN_APP=web`` (or ``tracker``).  Change ``[web] listen_port`` in
/etc/astertrack and restart the unit; nothing else needs editing.
"""

from __future__ import annotations

import os

from astertrack.config import load_config

_app = os.environ.get("ASTERTRACK_GUNICORN_APP", "web")
if _app not in ("web", "tracker"):
    raise SystemExit(f"ASTERTRACK_GUNICORN_APP must be web or tracker, not {_app!r}")
_section = load_config().values[_app]

bind = [f"{_section['listen_host']}:{_section['listen_port']}"]
worker_class = "gthread"
workers = int(os.environ.get("ASTERTRACK_GUNICORN_WORKERS", "2"))
# Each open live board or manager pop-up holds one web thread (Server-Sent Events).
threads = int(os.environ.get("ASTERTRACK_GUNICORN_THREADS", "8" if _app == "tracker" else "32"))
timeout = 60
graceful_timeout = 20
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
