"""Reading a call recording for the engines: a WAV checked and split, so a bad file is a per-call status.

Asterisk's MixMonitor writes 8 kHz 16-bit WAV; with ``r()``/``t()`` or the ``D`` option the caller and
the manager are on separate channels (docs/speech.md).  Only the standard library is used (no numpy):
channels are split with ``array`` slicing and resampling is linear interpolation, which is plenty for
speech below 4 kHz.
"""

from __future__ import annotations

import array
import struct
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

# Per-call statuses of a file the engine never sees (Transcript.status)
EMPTY, NOT_AUDIO, TRUNCATED, SILENT = "empty", "not_audio", "truncated", "silent"
SILENCE_RMS = 60  # 16-bit RMS below this is line noise, not speech (about -55 dBFS)


class BadAudio(Exception):
    """The file cannot be transcribed; ``status`` is what the call card says."""

    def __init__(self, status: str, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Audio:
    """Mono 16-bit PCM channels at ``rate``: one for a mono file, two (caller, manager) for stereo."""

    rate: int
    channels: tuple[bytes, ...]

    @property
    def seconds(self) -> float:
        return len(self.channels[0]) / 2 / self.rate if self.rate else 0.0


def load(path: Path) -> Audio:
    """Read and check a WAV; raises ``BadAudio`` with a status for empty/non-audio/truncated/silent files."""
    size = path.stat().st_size
    if size == 0:
        raise BadAudio(EMPTY, "the recording file is empty (0 bytes)")
    with open(path, "rb") as handle:
        head = handle.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise BadAudio(NOT_AUDIO, "not a WAV file (no RIFF/WAVE header)")
    try:
        with wave.open(str(path), "rb") as reader:
            params = reader.getparams()
            frames = reader.readframes(params.nframes)
    except (wave.Error, EOFError, struct.error) as exc:
        raise BadAudio(TRUNCATED if _declared_longer(path) else NOT_AUDIO, f"unreadable WAV: {exc}") from None
    if params.sampwidth != 2:
        raise BadAudio(NOT_AUDIO, f"unsupported sample width {params.sampwidth * 8} bit (16-bit PCM expected)")
    if params.nchannels not in (1, 2) or not params.framerate:
        raise BadAudio(NOT_AUDIO, f"unsupported WAV: {params.nchannels} channels at {params.framerate} Hz")
    frame_bytes = 2 * params.nchannels
    if len(frames) < params.nframes * frame_bytes:
        raise BadAudio(TRUNCATED, f"the file ends after {len(frames) // frame_bytes} of {params.nframes} frames "
                                  "(recording cut off or still being written)")
    if not frames:
        raise BadAudio(EMPTY, "the recording has no audio frames")
    samples = array.array("h")
    samples.frombytes(frames[: len(frames) - len(frames) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    if params.nchannels == 2:
        parts = (samples[0::2], samples[1::2])
    else:
        parts = (samples,)
    if all(_rms(part) < SILENCE_RMS for part in parts):
        raise BadAudio(SILENT, "the recording is silent (no speech-level signal)")
    return Audio(params.framerate, tuple(_to_bytes(part) for part in parts))


def _declared_longer(path: Path) -> bool:
    """True when the RIFF header promises more bytes than the file has: a cut-off recording."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    return len(head) == 8 and struct.unpack("<I", head[4:8])[0] + 8 > path.stat().st_size


def _rms(samples: array.array) -> float:
    if not samples:
        return 0.0
    step = max(1, len(samples) // 200_000)  # a sample of the file is enough to tell silence
    picked = samples[::step]
    return (sum(v * v for v in picked) / len(picked)) ** 0.5


def _to_bytes(samples: array.array) -> bytes:
    out = array.array("h", samples)
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def resample(pcm: bytes, rate: int, target: int) -> bytes:
    """Linear-interpolation resampling of mono 16-bit PCM (8 kHz -> 16 kHz doubles every sample)."""
    if rate == target or not pcm:
        return pcm
    src = array.array("h")
    src.frombytes(pcm)
    if rate * 2 == target:
        out = array.array("h", bytes(len(src) * 4))
        out[0::2] = src
        nxt = src[1:] + array.array("h", [src[-1]])
        out[1::2] = array.array("h", ((a + b) >> 1 for a, b in zip(src, nxt, strict=True)))
        return out.tobytes()
    count = int(len(src) * target / rate)
    ratio = rate / target
    last = len(src) - 1
    out = array.array("h", bytes(count * 2))
    for i in range(count):
        pos = i * ratio
        j = int(pos)
        frac = pos - j
        k = j + 1 if j < last else last
        out[i] = int(src[j] + (src[k] - src[j]) * frac)
    return out.tobytes()


def write_wav(path: Path, channels: list[bytes], rate: int) -> None:
    """Write mono or interleaved stereo 16-bit PCM (tests and the benchmark build recordings with it)."""
    if len(channels) == 1:
        data = channels[0]
    else:
        left, right = array.array("h"), array.array("h")
        left.frombytes(channels[0])
        right.frombytes(channels[1])
        size = max(len(left), len(right))
        left.extend([0] * (size - len(left)))
        right.extend([0] * (size - len(right)))
        mixed = array.array("h", bytes(size * 4))
        mixed[0::2], mixed[1::2] = left, right
        data = mixed.tobytes()
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(len(channels))
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(data)
