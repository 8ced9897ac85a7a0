"""The distillation teacher: resemblyzer's GE2E d-vector encoder, trained on thousands of real speakers.

Imported lazily (``pip install '.[bench]'``: resemblyzer and the setuptools cap its webrtcvad needs),
so the project runs without it; only computing new teacher embeddings needs it. Any callable that maps
a 16 kHz float32 clip to a unit vector can stand in (the tests use a fixed random projection).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SAMPLE_RATE = 16000
TeacherFn = Callable[[np.ndarray], np.ndarray]


def resemblyzer_teacher() -> TeacherFn:
    """resemblyzer's ``preprocess_wav`` (level normalisation, long-silence trimming) then
    ``embed_utterance``; a clip the voice detector trims to under 0.3 s is embedded untrimmed."""
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder("cpu", verbose=False)

    def embed(audio: np.ndarray) -> np.ndarray:
        wav = preprocess_wav(audio.astype(np.float32), source_sr=SAMPLE_RATE)
        if wav.size < 0.3 * SAMPLE_RATE:
            wav = audio.astype(np.float32)
        return np.asarray(encoder.embed_utterance(wav), dtype=np.float32)

    return embed
