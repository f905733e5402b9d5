#!/usr/bin/env python3
"""Speech analytics: real-time factor and word accuracy of the bundled engine (PocketSphinx).

Synthesises phone-like calls with espeak-ng (8 kHz mono 16-bit, low-passed, as MixMonitor writes
them) from a fixed set of call-centre sentences until at least ``--seconds`` of audio (60 by default),
writes them as WAV files, then runs the worker's own path on each (``worker.transcribe_file``: read
and check the WAV, resample, decode) in this process, one after another.

- ``rtf``: CPU seconds of this process spent decoding, per second of audio (one core; the worker runs
  ``[transcription] workers`` processes side by side, so a box does about cores / rtf calls' worth of
  audio per second).  Goal: <= 0.5.
- ``word_accuracy``: 1 - word error rate of the transcript (the language model's words, keyword
  spotting off) against the synthesised text, both normalised by ``speech.normalize`` (case, English
  stems), word-level Levenshtein over the whole set.
- ``keyword_recall`` / ``keyword_false``: with the sentences' key words given as dictionary hints
  (the keyword-spotting pass the worker runs for a site's phrases), the share of key words found in
  the call that said them, and spotted key words that call did not say; ``rtf_with_keywords`` is the
  real-time factor of that run (both decoding passes).

Run from the repo root with the project installed:  python bench/transcribe.py
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from astertrack.speech import audio, normalize, synth, worker  # noqa: E402

SENTENCES = [
    ("Hello, I would like to know the price of the sofa", "price"),
    ("I want to make a complaint about the delivery", "complaint"),
    ("Please send me the contract today", "contract"),
    ("Good morning, how is the weather in the city", "weather"),
    ("The manager was very rude to me yesterday", "rude"),
    ("Can I order a delivery for tomorrow morning", "delivery"),
    ("Do you have a discount for a second order", "discount"),
    ("I have been waiting for an hour on the line", "waiting"),
    ("Thank you very much, goodbye", "goodbye"),
    ("What time does your office open on Monday", "office"),
]


def word_errors(ref: list[str], hyp: list[str]) -> int:
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio to synthesise, at least")
    args = parser.parse_args()
    if not synth.available():
        sys.exit("espeak-ng is not installed: apt-get install espeak-ng")
    spec = worker.EngineSpec("pocketsphinx", "", "en")
    keywords = [k for _, k in SENTENCES]
    with tempfile.TemporaryDirectory() as tmp:
        calls, total = [], 0.0
        while total < args.seconds:
            i = len(calls)
            pair = [SENTENCES[(i * 2) % len(SENTENCES)], SENTENCES[(i * 2 + 1) % len(SENTENCES)]]
            pcm = synth.speak(pair[0][0]) + synth.silence(0.6) + synth.speak(pair[1][0], speed=150)
            path = Path(tmp) / f"call-{i}.wav"
            audio.write_wav(path, [pcm], synth.RATE)
            calls.append((path, " ".join(s for s, _ in pair), {k for _, k in pair}))
            total += len(pcm) / 2 / synth.RATE
        worker.transcribe_file(worker.Job(0, str(calls[0][0]), spec))  # load the model outside the timing
        errors = ref_words = found = said = false = 0
        cpu = cpu_hints = 0.0
        for n, (path, text, keys) in enumerate(calls):
            start = time.process_time()
            outcome = worker.transcribe_file(worker.Job(n, str(path), spec))
            cpu += time.process_time() - start
            assert outcome.status == "done", outcome
            ref = normalize.normalise(text)
            hyp = [normalize.norm(w["w"]) for w in outcome.words]
            errors += word_errors(ref, hyp)
            ref_words += len(ref)
            start = time.process_time()
            spotted = worker.transcribe_file(worker.Job(n, str(path), spec, tuple(keywords)))
            cpu_hints += time.process_time() - start
            heard = {w["w"] for w in spotted.words if w.get("k")}
            found += len(keys & heard)
            said += len(keys)
            false += len(heard - keys)
            print(f"call {n}: {outcome.audio_seconds:.1f} s | {text!r} -> {worker.transcript_text(outcome.words)!r} "
                  f"| spotted {sorted(heard)}", file=sys.stderr)
    result = {"engine": "pocketsphinx", "calls": len(calls), "audio_seconds": round(total, 1),
              "rtf": round(cpu / total, 3), "rtf_with_keywords": round(cpu_hints / total, 3), "word_accuracy": round(max(0.0, 1 - errors / ref_words), 3),
              "keyword_recall": round(found / said, 3), "keyword_false": false}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
