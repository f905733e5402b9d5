"""Phone-like test speech: espeak-ng's voice low-passed and resampled to 8 kHz 16-bit, as MixMonitor
writes it.  Used by the tests and ``bench/transcribe.py``; needs Debian's ``espeak-ng``."""

from __future__ import annotations

import array
import io
import shutil
import subprocess
import sys
import wave

from astertrack.speech.audio import resample

RATE = 8000


def available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, voice: str = "en-us", speed: int = 140, rate: int = RATE) -> bytes:
    """Mono 16-bit PCM at ``rate`` of ``text`` said by espeak-ng."""
    result = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
                            capture_output=True, check=True, timeout=60)
    with wave.open(io.BytesIO(result.stdout)) as reader:
        source_rate = reader.getframerate()
        frames = reader.readframes(reader.getnframes())
    return resample(_lowpass(frames, source_rate, rate / 2 * 0.85), source_rate, rate)


def silence(seconds: float, rate: int = RATE) -> bytes:
    return bytes(int(seconds * rate) * 2)


def _lowpass(pcm: bytes, rate: int, cutoff: float) -> bytes:
    """Two passes of a moving average about ``rate / cutoff / 2`` long: a cheap anti-alias filter
    before decimation (no numpy on the box)."""
    samples = array.array("h")
    samples.frombytes(pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    width = max(1, round(rate / (2 * cutoff)))
    for _ in range(2):
        out = array.array("h", bytes(len(samples) * 2))
        total, window = 0, [0] * width
        for i, value in enumerate(samples):
            slot = i % width
            total += value - window[slot]
            window[slot] = value
            out[i] = total // width
        samples = out
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()
