"""Neural-voice ASR *validation* clips: the corpus' validation sentences read by Kokoro voice mixtures
that the far suite does not use.

Why: English speech settings that depend on how natural the speech is (how often a decoder set's CTC
draft guesses its tokens: ``benchmarks.speculative``) cannot be chosen on the formant and diphone voices
of the corpus, where Whisper's own decoder is wrong a third of the time, and English has no real speaker
outside the human test split. These clips share the far suite's synthesiser but none of its identities
(only two-voice mixtures, drawn with another seed, none equal to a far one) and none of its sentences
(the far suite reads test sentences). Role: valid. Choosing on them makes the far column's *speed*
figures less independent; say so where a figure is chosen on them.

    python -m training.suites.kokoro_valid [--out data/kokoro-asr-valid] [--clips 80]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from training.data.manifest import ManifestRow, filter_split, read_manifest
from training.suites import kokoro
from training.suites.far import KOKORO_SYNTH, finish, post_plan, render
from training.suites.writer import write_suite

FAR_SEED = 0


def valid_voices(seed: int, count: int) -> list[kokoro.KokoroVoice]:
    """Two-voice mixtures of another seed than the far suite's, none equal to one of the far suite's."""
    far = {(v.voice_a, v.voice_b, v.weight) for v in kokoro.identities(FAR_SEED)}
    rng = np.random.default_rng([seed, 977])
    names = kokoro.packaged_voices()
    voices: list[kokoro.KokoroVoice] = []
    while len(voices) < count:
        a, b = rng.choice(len(names), size=2, replace=False)
        voice = kokoro.KokoroVoice("", names[int(a)], names[int(b)], round(float(rng.uniform(0.25, 0.75)), 3),
                                   round(float(rng.uniform(0.9, 1.1)), 3))
        if (voice.voice_a, voice.voice_b, voice.weight) not in far:
            voices.append(replace(voice, name=f"kokoro-valid-{len(voices)}-{voice.voice_a}-{voice.voice_b}"))
    return voices


def build(out: Path, corpus: Path, clips: int, voices: int, seed: int) -> dict:
    started = time.time()
    sentences = sorted({r.text or "" for r in filter_split(read_manifest(corpus / "asr.jsonl"), "valid")})
    picked = [sentences[int(i)] for i in np.random.default_rng([seed, 5]).permutation(len(sentences))[:clips]]
    identities = valid_voices(seed, voices)
    rows = []
    for index, text in enumerate(picked):
        voice = identities[index % len(identities)]
        clip_id = f"kokoro-valid-asr-{index:04d}"
        rng, meta = post_plan(clip_id, (5.0, 30.0))
        rel = f"audio/asr/{clip_id}.flac"
        seconds = render(out, rel, lambda text=text, voice=voice, rng=rng, meta=meta:
                         finish(kokoro.synthesize(text, voice), rng, meta))
        rows.append(ManifestRow(id=clip_id, path=rel, duration_s=round(seconds, 3), split="valid", task="asr",
                                speaker=voice.name, text=text, label=None,
                                meta={"synth": KOKORO_SYNTH, "voice_a": voice.voice_a, "voice_b": voice.voice_b,
                                      "weight": voice.weight, "speed": voice.speed, **meta}))
    info = {"suite": "kokoro-asr-valid", "role": "valid", "seed": seed, "synth": KOKORO_SYNTH,
            "runtime": kokoro.runtime(), "identities": [vars(v) for v in identities],
            "notes": "corpus valid sentences; Kokoro mixtures apart from the far suite's identities"}
    return write_suite(out, {"asr": rows}, {}, info, started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/kokoro-asr-valid"))
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    parser.add_argument("--clips", type=int, default=80)
    parser.add_argument("--voices", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if reason := kokoro.kokoro_available():
        raise SystemExit(reason)
    summary = build(args.out, args.corpus, args.clips, args.voices, args.seed)
    print({k: summary[k] for k in ("counts", "manifest_sha256", "build_seconds")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
