"""Flask settings derived from the shared astertrack configuration (microblog's Config class)."""

from __future__ import annotations

import datetime as dt

from astertrack.config import Config


class WebSettings:
    """Upper-case attributes become ``app.config`` keys."""

    def __init__(self, config: Config):
        web = config.values["web"]
        self.ASTERTRACK_CONFIG = config
        self.DATABASE_URL = config.values["database"]["url"]
        self.DATABASE_POOL_SIZE = config.values["database"]["pool_size"]
        self.SECRET_KEY = web["secret_key"]
        self.RECORDINGS_DIR = config.values["recordings"]["dir"]
        self.DATA_DIR = config.values["general"]["data_dir"]  # where the retention sweep leaves its report
        self.BABEL_DEFAULT_LOCALE = web["default_locale"]
        self.BABEL_DEFAULT_TIMEZONE = "UTC"
        self.SESSION_COOKIE_SECURE = web["secure_cookies"]
        self.REMEMBER_COOKIE_SECURE = web["secure_cookies"]
        self.SESSION_COOKIE_HTTPONLY = True
        self.REMEMBER_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.REMEMBER_COOKIE_SAMESITE = "Lax"
        self.PERMANENT_SESSION_LIFETIME = dt.timedelta(hours=12)
        self.SESSION_IDLE_MINUTES = web["session_idle_minutes"]  # 0 = no idle timeout (security.load_user)
        self.WTF_CSRF_TIME_LIMIT = None  # tokens live as long as the session
        self.LOGIN_ATTEMPTS = 5  # failed logins allowed per window for one login from one address
        self.LOGIN_ATTEMPTS_PER_ADDRESS = 20  # and from one address in all (several users may share an office NAT)
        self.TRUST_FORWARDED_FOR = web["trust_forwarded_for"]
        self.LOGIN_WINDOW_SECONDS = 300
        self.SSE_POLL_SECONDS = 0.4
        self.CHAT_POLL_SECONDS = web["chat_poll_seconds"]  # the chats page's stream (webadmin.chat.feed)
        self.SSE_MAX_SECONDS = 300  # the browser's EventSource reconnects; frees the worker thread
        self.MAX_CONTENT_LENGTH = 5 * 1024 * 1024
