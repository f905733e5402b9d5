"""Live board (calls in progress, managers' device states) and the manager's incoming-call pop-up.

Both are Server-Sent Events streams that poll the database a few times a second; the AMI
listener and the AGI server write the state, so no message bus is needed.  Each stream ends
after ``SSE_MAX_SECONDS`` and the browser's EventSource reconnects on its own.
"""

from flask import Blueprint

bp = Blueprint("live", __name__)

from webadmin.live import views  # noqa: E402,F401
