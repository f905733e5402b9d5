"""WSGI entry point: ``gunicorn tracker.wsgi:app`` (or ``gunicorn 'tracker:create_app()'``)."""

from tracker import create_app

app = create_app()
