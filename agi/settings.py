"""The ``[agi]`` settings a route needs, read once from the config (and again on SIGHUP)."""

from __future__ import annotations

from dataclasses import dataclass

from astertrack.config import Config


@dataclass(frozen=True)
class AgiSettings:
    node: str = "pbx1"
    region: str = "RU"
    request_timeout: float = 3.0
    reservation_seconds: int = 15
    ring_timeout: int = 20
    max_attempts: int = 3
    fallback_dial: str = ""
    release_grace_seconds: int = 900
    callerid_prefix: bool = True
    device_state_source: str = "asterisk"
    recording_format: str = "wav"
    cache_seconds: float = 5.0
    max_parallel: int = 8

    @classmethod
    def from_config(cls, config: Config) -> AgiSettings:
        agi = config.values["agi"]
        return cls(
            node=config.values["general"]["node"],
            region=config.values["general"]["default_region"],
            request_timeout=agi["request_timeout"],
            reservation_seconds=agi["reservation_seconds"],
            ring_timeout=agi["ring_timeout"],
            max_attempts=max(1, agi["max_attempts"]),
            fallback_dial=agi["fallback_dial"],
            release_grace_seconds=agi["release_grace_seconds"],
            callerid_prefix=agi["callerid_prefix"],
            device_state_source=agi["device_state_source"],
            recording_format=config.values["recordings"]["format"],
            cache_seconds=agi["cache_seconds"],
            max_parallel=max(1, agi["max_parallel"]),
        )
