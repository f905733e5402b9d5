"""WSGI entry point for gunicorn: ``gunicorn -c deploy/gunicorn.conf.py webadmin.wsgi:app``.

Server-Sent Events (live board, manager pop-up) hold a connection open per browser tab, so
run threaded workers: ``--worker-class gthread --workers 2 --threads 32`` (each open tab uses
one thread for up to five minutes, then the browser reconnects), or ``--worker-class gevent``.
"""

from webadmin import create_app

app = create_app()
