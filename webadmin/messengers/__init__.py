"""Messengers in the admin (admins only): each site's Telegram bot and WhatsApp webhook secret,
registering the bot's webhook with Telegram; the rules live in astertrack.leads.messengers."""

from flask import Blueprint

bp = Blueprint("messengers", __name__)

from webadmin.messengers import views  # noqa: E402,F401
