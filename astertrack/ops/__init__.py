"""Running astertrack on a box: retention, backups, metrics, journald logging, process supervision, gunicorn."""
