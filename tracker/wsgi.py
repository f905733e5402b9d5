"""WSGI entry point: ``gunicorn tracker.wsgi:app`` (or ``gunicorn 'tracker:create_app()'``).

As deployed (astertrack-tracker.service) gunicorn runs it with ``--config
python:astertrack.ops.gunicorn_conf``, whose event-loop worker (``astertrack.ops.serving``) reads
each request whole before a thread runs this app, so slow or idle clients cannot hold the
threads.  Without that config gunicorn serves it with its sync worker: fine for a try, not for
the internet.
"""

from tracker import create_app

app = create_app()
