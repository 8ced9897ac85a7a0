"""The translation scorer's own pieces (``training.translation_eval``): which English transcripts become references,
how a localised prompt is paired with the transcript of its file name, and the figures it reports."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import soundfile as sf

from training.suites.human import TRANSCRIPTS
from training.translation_eval import (
    ParallelClip,
    Translation,
    english_references,
    parallel_clips,
    scores,
    voice_folder,
)

TRANSCRIPT_LINES = """; Core Asterisk Sounds in English

vm-intro: Please leave your message after the tone.
beep: [this is a simple beep tone]
goodbye: Goodbye.
spy-nbs: N B S
digits/2: Two.
conf-locked: This conference is locked. (pause) Please try later.
"""


@pytest.fixture
def transcripts(tmp_path):
    path = tmp_path / "en" / TRANSCRIPTS
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(TRANSCRIPT_LINES.encode()))
    return tmp_path / "en"


def test_references_are_the_english_texts_of_three_words_or_more_without_notes(transcripts):
    assert english_references(transcripts) == {
        "vm-intro": "Please leave your message after the tone.",
        "conf-locked": "This conference is locked. Please try later.",  # the note in brackets is not speech
    }  # "Goodbye.", a digit, spelt letters and a beep's description are left out


def test_a_localised_prompt_is_paired_with_the_english_text_of_its_name(transcripts, tmp_path):
    root = tmp_path / "fr"
    folder = root / voice_folder("fr")
    for name, seconds in (("vm-intro", 1.0), ("conf-locked", 0.1), ("goodbye", 1.0), ("unknown", 1.0)):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{name}.wav", np.zeros(int(8000 * seconds), dtype=np.float32), 8000, subtype="PCM_16")
    clips = parallel_clips(root, "fr", "wav", english_references(transcripts), count=5, seed=0)
    # conf-locked is too short for the server (0.1 s); goodbye has no reference; unknown no transcript
    assert [(c.language, c.key, c.reference) for c in clips] == [
        ("fr", "vm-intro", "Please leave your message after the tone.")]
    assert len(clips[0].wave) == 16000  # decoded at 16 kHz


def test_the_figures_are_sacrebleus_and_the_detection_rate():
    clips = [ParallelClip("fr", str(i), np.zeros(1), text) for i, text in
             enumerate(["Please leave your message after the tone.", "This conference is locked."])]
    perfect = scores(clips, [Translation(c.reference, "fr") for c in clips])
    assert (perfect["chrf"], perfect["bleu"], perfect["language_accuracy"]) == (100.0, 100.0, 1.0)
    wrong = scores(clips, [Translation("Leave a message.", "fr"), Translation("The room is shut.", "it")])
    assert wrong["chrf"] < 50 and wrong["bleu"] < 20 and wrong["language_accuracy"] == 0.5
    assert wrong["detected"] == {"fr": 1, "it": 1} and "nc:6|nw:0" in wrong["signatures"]["chrf"]  # chrF: 6-grams
