"""The server's default speech gate is a voice detector: a voice is read, while hum, tones and noise are
refused by /verify (422 no_speech), answered with no words by /asr without the model, and left out of long
recordings; ``ELP_SPEECH_DETECTOR=level`` brings back the level rule, which lets them through."""

from __future__ import annotations

import numpy as np
import pytest

from tests.elp.test_voice_activity import hum
from tests.server.helpers import assert_error, clip_files, make_settings, metric, running_app
from tests.server.test_long_form import wav

pytestmark = pytest.mark.anyio
RATE = 16000
ASR_ROWS = {"task": "asr"}


def pause(seconds: float, seed: int = 0) -> np.ndarray:
    return (1e-4 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


async def test_verify_refuses_a_clip_without_a_voice(tiny_store, tmp_path, spoken_clip) -> None:
    speech, other = spoken_clip("my voice is my passport"), spoken_clip("please verify me now")
    async with running_app(make_settings(*tiny_store, tmp_path, speech_detector="voice")) as (_, client):
        ok = await client.post("/verify", files=clip_files(wav(speech), reference=wav(other)))
        assert ok.status_code == 200, ok.text
        error = assert_error(await client.post("/verify", files=clip_files(wav(speech), reference=wav(hum(3)))),
                             422, "no_speech")
        assert "'reference'" in error["message"] and "voice" in error["message"]
    async with running_app(make_settings(*tiny_store, tmp_path, speech_detector="level")) as (_, client):
        assert (await client.post("/verify", files=clip_files(wav(speech), reference=wav(hum(3))))).status_code == 200


async def test_asr_answers_hum_with_no_words_without_the_model(tiny_store, tmp_path, spoken_clip) -> None:
    async with running_app(make_settings(*tiny_store, tmp_path, speech_detector="voice")) as (app, client):
        answer = (await client.post("/asr", files=clip_files(wav(hum(4))))).json()
        assert answer["text"] == "" and answer["duration_s"] == 4.0
        assert metric(app, "elp_inference_rows_total", ASR_ROWS) == 0
        assert metric(app, "elp_voiceless_audio_seconds_total", {"endpoint": "asr"}) == 4.0
        assert (await client.post("/asr", files=clip_files(wav(spoken_clip("hello world"))))).status_code == 200
        assert metric(app, "elp_inference_rows_total", ASR_ROWS) == 1


async def test_a_long_recording_leaves_out_a_stretch_of_hum(tiny_store, tmp_path, spoken_clip) -> None:
    sentences = [spoken_clip(text) for text in (
        "the first sentence of a voicemail is about the weather", "then the caller put me on hold for a while",
        "after the music she came back and gave me her number", "call me back tomorrow morning after nine")]
    parts = [sentences[0], pause(0.8), sentences[1], pause(0.8, 1), hum(8), pause(0.8, 2), sentences[2], pause(0.8, 3),
             sentences[3]]
    start = sum(p.size for p in parts[:4]) / RATE
    hum_span = (start, start + 8.0)
    recording = np.concatenate(parts)
    assert recording.size / RATE > 20  # long enough to be cut
    spans, unread = {}, {}
    for detector in ("voice", "level"):
        async with running_app(make_settings(*tiny_store, tmp_path, speech_detector=detector)) as (app, client):
            answer = (await client.post("/asr", files=clip_files(wav(recording)))).json()
            spans[detector] = [(s["start_s"], s["end_s"]) for s in answer["segments"]]
            unread[detector] = metric(app, "elp_voiceless_audio_seconds_total", {"endpoint": "asr"})

    def hum_read(detector: str) -> float:  # seconds of the hum inside the segments read
        return sum(max(0.0, min(end, hum_span[1]) - max(start, hum_span[0])) for start, end in spans[detector])

    # the voice detector reads at most a blip of the hum (its onset may sound like a voice for a chunk or two)
    assert hum_read("voice") <= 1.0 and hum_read("level") >= 7.5, (spans, hum_span)
    assert len(spans["voice"]) >= 4  # every sentence is still read
    # what operators see: the seconds left out
    assert unread["level"] == 0 and unread["voice"] >= 7.0
    covered = sum(end - start for start, end in spans["voice"])
    assert unread["voice"] == pytest.approx(recording.size / RATE - covered, abs=2e-3)
