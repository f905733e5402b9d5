"""One configuration loader for every astertrack process.

Layers, later wins: defaults in code -> the main file (``/etc/astertrack/astertrack.conf``)
-> ``conf.d/*.conf`` drop-ins in name order -> ``ASTERTRACK_<SECTION>_<KEY>`` environment
variables.  Files are INI.  Every key is declared in ``SCHEMA`` so a typo is an error that
names the key and the file instead of a setting silently ignored.
"""

from __future__ import annotations

import configparser
import logging
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = "/etc/astertrack/astertrack.conf"
CONFIG_PATH_ENV = "ASTERTRACK_CONFIG"
ENV_PREFIX = "ASTERTRACK_"


class ConfigError(ValueError):
    """A configuration file or variable is wrong; the message names the key and where."""


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"expected yes/no, got {raw!r}")


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError(f"port out of range: {value}")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(f"must not be negative: {value}")
    return value


def _minutes_list(raw: str) -> tuple[float, ...]:
    values = tuple(float(part) for part in raw.replace(";", ",").split(",") if part.strip())
    if not values or any(v < 0 for v in values):
        raise ValueError(f"expected a comma list of minutes (e.g. 2, 5, 15), got {raw!r}")
    return values


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise ValueError(f"must not be negative: {value}")
    return value


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _text(raw: str) -> str:
    return raw.strip()


@dataclass(frozen=True)
class Key:
    parse: Callable[[str], Any]
    default: Any
    secret: bool = False
    help: str = ""


# section -> key -> Key.  Section names hold no underscore so that
# ASTERTRACK_<SECTION>_<KEY> splits unambiguously.
SCHEMA: dict[str, dict[str, Key]] = {
    "general": {
        "node": Key(_text, "pbx1", help="name of this PBX when several share one database"),
        "log_level": Key(_choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
        "data_dir": Key(_text, "/var/lib/astertrack"),
        "default_region": Key(_text, "RU", help="ISO country for numbers written without +"),
        "metrics_host": Key(_text, "127.0.0.1", help="address of the AGI/AMI daemons' /metrics and /healthz"),
        "metrics_token": Key(_text, "", secret=True, help="the web admin's and the tracker's /metrics answer only "
                             "'Authorization: Bearer <this>'; empty = those two serve no metrics"),
    },
    "database": {
        "url": Key(_text, "sqlite:////var/lib/astertrack/astertrack.db", secret=True),
        "pool_size": Key(_positive_int, 10),
        "echo": Key(_bool, False),
    },
    "agi": {
        "listen_host": Key(_text, "127.0.0.1"),
        "listen_port": Key(_port, 4573),
        "request_timeout": Key(_positive_float, 3.0, help="seconds one AGI request may take"),
        "reservation_seconds": Key(_positive_int, 15, help="a chosen manager is held this long"),
        "ring_timeout": Key(_positive_int, 20),
        "max_attempts": Key(_positive_int, 3),
        "fallback_dial": Key(_text, "", help="dial string when no manager can take the call"),
        "release_grace_seconds": Key(_positive_int, 900),
        "callerid_prefix": Key(_bool, True, help="prefix caller name with [source]"),
        "device_state_source": Key(_choice("asterisk", "database"), "asterisk"),
        "db_threads": Key(_positive_int, 0, help="threads running the AGI's database work; 0 = [database] pool_size"),
        "db_inline": Key(_bool, True, help="a database on this machine (SQLite, PostgreSQL on a socket or "
                                           "loopback): run a decision's queries on the event loop, no thread "
                                           "hand-off; a busy database falls back to the threads"),
        "max_parallel": Key(_positive_int, 8, help="AGI decisions worked on at once; more calls wait their turn"),
        "workers": Key(_positive_int, 0, help="FastAGI worker processes sharing the port; 0 = one per core "
                                              "(at most 2 on SQLite, 4 on PostgreSQL)"),
        "cache_seconds": Key(_positive_float, 5.0,
                             help="the FastAGI daemon checks this often, in the background, whether an admin "
                                  "changed rules/numbers/sources, and re-reads them if so; SIGHUP re-reads at once"),
        "metrics_port": Key(_port, 9573, help="/metrics and /healthz of the FastAGI server; 0 = off"),
    },
    "ami": {
        "host": Key(_text, "127.0.0.1"),
        "port": Key(_port, 5038),
        "username": Key(_text, "astertrack"),
        "secret": Key(_text, "", secret=True),
        "ping_interval": Key(_positive_float, 10.0),
        "pong_timeout": Key(_positive_float, 5.0),
        "reconnect_max_delay": Key(_positive_float, 30.0),
        "orphan_timeout": Key(_positive_int, 4 * 3600),
        "store_raw_events": Key(_bool, True),
        "inbound_contexts": Key(_text, "", help="comma list of dialplan contexts whose calls are tracked "
                                "without an AGI announcement (e.g. from-trunk); empty = any inbound channel"),
        "sweep_interval": Key(_positive_float, 60.0, help="seconds between orphan sweeps"),
        "connect_timeout": Key(_positive_float, 10.0, help="seconds to connect and log in before retrying"),
        "metrics_port": Key(_port, 9574, help="/metrics and /healthz of the AMI listener; 0 = off"),
        "cdr_file": Key(_text, "/var/log/asterisk/cdr-custom/astertrack.csv",
                        help="Asterisk's CDR lines (asterisk-conf/cdr_custom_astertrack.conf): calls touched by a "
                        "gap in the AMI stream take their outcome, wait and talk from here; empty = off"),
        "cdr_wait": Key(_positive_float, 600.0, help="seconds a call touched by a gap waits for its CDR line "
                        "before it keeps the listener's best guess"),
    },
    "callbacks": {
        "attempts": Key(_positive_int, 3, help="calls placed for one callback request before it fails"),
        "retry_minutes": Key(_minutes_list, (2.0, 5.0, 15.0), help="comma list: minutes before each retry after a busy or "
                             "unanswered attempt (the last value repeats)"),
        "originate_timeout": Key(_positive_int, 30, help="seconds the manager's phone rings for a callback"),
        "context": Key(_text, "astertrack-callback", help="dialplan context that records the callback and dials "
                       "the visitor (asterisk-conf/extensions_astertrack.conf)"),
        "enabled": Key(_bool, True, help="the AMI listener places due callbacks (needs `originate` in the AMI "
                       "user's write= rights)"),
    },
    "webhooks": {
        "max_attempts": Key(_positive_int, 8, help="attempts of one delivery before it is given up (the dead letter)"),
        "retry_base_seconds": Key(_positive_float, 30.0, help="wait after the first failed attempt; doubles after each"),
        "retry_max_seconds": Key(_positive_float, 3600.0, help="the longest wait between two attempts"),
    },
    "web": {
        "listen_host": Key(_text, "127.0.0.1"),
        "listen_port": Key(_port, 8080),
        "secret_key": Key(_text, "", secret=True),
        "secure_cookies": Key(_bool, True),
        "default_locale": Key(_choice("ru", "en"), "ru"),
        "trust_forwarded_for": Key(_bool, False, help="behind a reverse proxy: take the client address and "
                                   "scheme from one X-Forwarded-For/-Proto hop (login rate limit, secure cookies)"),
        "session_idle_minutes": Key(_positive_int, 60, help="an admin session with no request for this long ends "
                                    "on the server (log in again); 0 = only logout and a password change end it"),
        "chat_poll_seconds": Key(_positive_float, 0.1, help="the chats page's streams: each process reads what "
                                 "changed in the website chats this often, once for all its managers"),
    },
    "tracker": {
        "listen_host": Key(_text, "127.0.0.1"),
        "listen_port": Key(_port, 8081),
        "rate_limit_per_minute": Key(_positive_int, 120),
        "max_body_bytes": Key(_positive_int, 16384),
        "trust_forwarded_for": Key(_bool, False),
        "site_cache_seconds": Key(_positive_float, 30.0, help="how long a site's settings are cached per process"),
        "maintenance_seconds": Key(_positive_float, 30.0,
                                   help="sweep expired holds and sample pool usage this often (0 = off)"),
        "sample_seconds": Key(_positive_int, 60, help="pool usage sample interval for pool health"),
        "synchronous_commit": Key(_bool, False, help="PostgreSQL: wait for the WAL flush on every page view"),
        "max_holds_per_ip": Key(_positive_int, 4, help="pool numbers of one site one client address may hold "
                                "at once (an office NAT shares one); 0 = no limit"),
        "max_holds_per_visitor": Key(_positive_int, 2, help="pool numbers of one site one visitor id may hold "
                                     "at once; 0 = no limit"),
        "pool_pressure": Key(_positive_float, 0.5, help="share of a pool in use from which a new number is held "
                             "only for first_hold_seconds until the browser's first heartbeat or interaction; 0 = off"),
        "first_hold_seconds": Key(_positive_int, 90, help="that short first hold (never shorter than the site's "
                                  "heartbeat plus 30 s)"),
        "chat_poll_seconds": Key(_positive_float, 0.1, help="the website chat's streams: each process reads what "
                                 "changed this often, once for all its visitors"),
    },
    "retention": {
        "calls_days": Key(_positive_int, 0, help="default for sites without their own setting; 0 = keep forever"),
        "sessions_days": Key(_positive_int, 0, help="visitor sessions, overflow events, pool samples; 0 = keep"),
        "recordings_days": Key(_positive_int, 0, help="audio files (the call row stays); 0 = keep forever"),
        "raw_events_days": Key(_positive_int, 0, help="raw AMI events kept for rebuilding outcomes; 0 = keep"),
        "audit_days": Key(_positive_int, 730, help="the admin's settings history (audit log); 0 = keep forever"),
        "batch_size": Key(_positive_int, 500, help="rows per delete transaction"),
    },
    "recordings": {
        "dir": Key(_text, "/var/spool/asterisk/monitor"),
        "format": Key(_choice("wav", "WAV", "gsm", "mp3"), "wav"),
    },
    "transcription": {
        "command": Key(_text, "", help="engine command line with {input} and {language}, split like a shell "
                                         "but never run through one; empty = transcription off"),
        "language": Key(_text, "ru", help="passed to the engine as {language} and stored on the transcript"),
        "timeout": Key(_positive_int, 600, help="seconds one recording may take before the engine is killed"),
        "min_talk_seconds": Key(_positive_float, 3.0, help="shorter answered calls are not transcribed"),
        "engine": Key(_text, "pocketsphinx", help="speech engine of sites without their own setting: pocketsphinx "
                      "(bundled, English), vosk, whispercpp, faster-whisper; ignored while command is set"),
        "model_path": Key(_text, "", help="that engine's model file or folder (vosk, whispercpp, faster-whisper)"),
        "workers": Key(_positive_int, 2, help="recordings transcribed at once (processes)"),
        "max_attempts": Key(_positive_int, 4, help="engine runs of one call before it is marked failed"),
        "retry_seconds": Key(_positive_int, 300, help="first back-off after a failed run; doubles each time"),
    },
    "conversions": {
        "ga4_url": Key(_text, "https://www.google-analytics.com/mp/collect",
                       help="GA4 Measurement Protocol endpoint (tests point it at a local server)"),
        "metrica_url": Key(_text, "https://api-metrika.yandex.net",
                           help="Yandex Metrica management API base; calls go to "
                                "/management/v1/counter/{id}/offline_conversions/upload_calls"),
        "timeout": Key(_positive_float, 10.0, help="seconds one request to a platform may take"),
        "admin_url": Key(_text, "", help="the web admin's public address (https://track.example.ru): Metrica's "
                         "CallTrackerURL links each call to its card there; empty = not sent"),
        "max_attempts": Key(_positive_int, 8, help="runs that retry a conversion a network error stopped, "
                            "then it is logged as refused"),
    },
    "messengers": {
        "telegram_api_url": Key(_text, "https://api.telegram.org",
                                help="Telegram Bot API base; setWebhook goes to {base}/bot{token}/setWebhook "
                                     "(tests point it at a local server)"),
        "tracker_url": Key(_text, "", help="the tracker's public address (https://track.example.ru/ct): Telegram "
                           "posts a site's updates to {tracker_url}/v/tg/{site key}; empty = registering refused"),
        "timeout": Key(_positive_float, 10.0, help="seconds one request to Telegram may take"),
        "max_body_bytes": Key(_positive_int, 65536, help="the largest update a messenger webhook accepts (413 above)"),
    },
}


def _section_values() -> dict[str, dict[str, Any]]:
    return {section: {name: key.default for name, key in keys.items()} for section, keys in SCHEMA.items()}


@dataclass
class Config:
    """Parsed settings: ``config.get("ami", "port")`` or ``config.ami["port"]``."""

    values: dict[str, dict[str, Any]] = field(default_factory=_section_values)
    files: list[str] = field(default_factory=list)
    path: str | None = None

    def get(self, section: str, key: str) -> Any:
        return self.values[section][key]

    def __getattr__(self, section: str) -> dict[str, Any]:
        try:
            return self.__dict__["values"][section]
        except KeyError:
            raise AttributeError(section) from None

    def set(self, section: str, key: str, raw: Any, origin: str = "code") -> None:
        _assign(self.values, section, key, raw if isinstance(raw, str) else str(raw), origin)


# Keys that moved: read under their old name (with a warning) so an upgraded box keeps working.
RENAMED: dict[tuple[str, str], tuple[str, str]] = {
    ("web", "recordings_dir"): ("recordings", "dir"),  # one recordings directory for every process
}


def _assign(values: dict[str, dict[str, Any]], section: str, key: str, raw: str, origin: str) -> None:
    if (section, key) in RENAMED:
        new_section, new_key = RENAMED[section, key]
        log.warning("%s: [%s] %s is now [%s] %s; please rename it", origin, section, key, new_section, new_key)
        section, key = new_section, new_key
    if section not in SCHEMA:
        raise ConfigError(f"{origin}: unknown section [{section}] (known: {', '.join(SCHEMA)})")
    spec = SCHEMA[section].get(key)
    if spec is None:
        raise ConfigError(f"{origin}: unknown key '{key}' in [{section}] (known: {', '.join(SCHEMA[section])})")
    try:
        values[section][key] = spec.parse(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{origin}: invalid value for [{section}] {key}: {exc}") from None


def _read_file(values: dict[str, dict[str, Any]], path: Path) -> None:
    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    parser.optionxform = str  # keep key case so errors show what the admin typed
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle, source=str(path))
    except configparser.Error as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    holds_secret = False
    for section in parser.sections():
        for key, raw in parser.items(section):
            _assign(values, section, key, raw, str(path))
            section_now, key_now = RENAMED.get((section, key), (section, key))
            holds_secret = holds_secret or SCHEMA[section_now][key_now].secret
    if holds_secret:
        mode = path.stat().st_mode
        if mode & stat.S_IROTH:
            log.warning("%s holds secrets but is world-readable; chmod 0640 it", path)


def _apply_env(values: dict[str, dict[str, Any]], environ: Mapping[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_PATH_ENV:
            continue
        rest = name[len(ENV_PREFIX):].lower()
        section, _, key = rest.partition("_")
        if section not in SCHEMA:
            # Other ASTERTRACK_* variables (test switches and the like) are not settings.
            continue
        _assign(values, section, key, raw, f"environment variable {name}")


def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None,
                overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Config:
    """Read every layer.  A missing main file is fine (defaults + env); a broken one is not."""
    environ = os.environ if environ is None else environ
    explicit = path is not None or CONFIG_PATH_ENV in environ
    main = Path(path or environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)
    config = Config(path=str(main))
    if main.exists():
        _read_file(config.values, main)
        config.files.append(str(main))
    elif explicit:
        raise ConfigError(f"{main}: configuration file not found")
    dropins = main.parent / "conf.d"
    if dropins.is_dir():
        for dropin in sorted(dropins.glob("*.conf")):
            _read_file(config.values, dropin)
            config.files.append(str(dropin))
    _apply_env(config.values, environ)
    for section, keys in (overrides or {}).items():
        for key, raw in keys.items():
            config.set(section, key, raw, origin="override")
    return config


def render_config(values: Mapping[str, Mapping[str, Any]], only_secrets: bool | None = None) -> str:
    """Write settings back as INI text (used by ``astertrack init`` and install.sh)."""
    lines: list[str] = []
    for section, keys in values.items():
        chosen = []
        for key, value in keys.items():
            spec = SCHEMA[section][key]
            if only_secrets is not None and spec.secret != only_secrets:
                continue
            if isinstance(value, bool):
                value = "yes" if value else "no"
            elif isinstance(value, (tuple, list)):  # a comma list ([callbacks] retry_minutes)
                value = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
            chosen.append(f"{key} = {value}")
        if chosen:
            lines.append(f"[{section}]")
            lines.extend(chosen)
            lines.append("")
    return "\n".join(lines)
