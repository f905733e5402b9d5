"""The website chat as managers answer it (#25): the chats page (waiting chats with the visit's
source and journey, the manager's own, every open chat for staff), the JSON actions of its script
(reply, claim, transfer, close, typing, read, away) and its live stream on the admin's one hub.
The conversation rules are the core's (``astertrack.chat``); this package decides who may see and
do what, and shows it."""

from flask import Blueprint

bp = Blueprint("chats", __name__)

from webadmin.chat import views  # noqa: E402,F401
