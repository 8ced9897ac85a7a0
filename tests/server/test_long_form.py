"""Long recordings on /asr: cut at pauses into segments that run as ordinary rows, joined into one
answer with each segment's span; other tasks keep the clip limit; the deployment can turn it off."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import soundfile as sf

from elp.long_form import join_texts
from elp.tasks import get_task
from tests.elp.test_long_form import speech_with_pauses
from tests.server.helpers import assert_error, clip_files, make_settings, metric, running_app

pytestmark = pytest.mark.anyio
RATE = 16000


def wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def recording() -> np.ndarray:
    """~52 s of bursts and pauses, quantised to 16 bits (so a segment re-encoded alone has the same samples)."""
    clip, _ = speech_with_pauses(list(np.random.default_rng(7).uniform(2.0, 5.0, size=14)), seed=7)
    return sf.read(io.BytesIO(wav(clip)), dtype="float32")[0]


async def test_a_long_recording_is_answered_in_segments_equal_to_the_segments_sent_alone(
        tiny_store, tmp_path, recording) -> None:
    settings = make_settings(*tiny_store, tmp_path)
    async with running_app(settings) as (app, client):
        response = await client.post("/asr", files=clip_files(wav(recording)))
        assert response.status_code == 200, response.text
        answer = response.json()
        audio_s = metric(app, "elp_audio_seconds_total", {"endpoint": "asr"})  # what operators see of it
        assert audio_s == pytest.approx(recording.size / RATE)
        segments = answer["segments"]
        assert len(segments) >= 3 and answer["duration_s"] == pytest.approx(recording.size / RATE, abs=1e-3)
        assert segments[0]["start_s"] == 0 and segments[-1]["end_s"] == pytest.approx(recording.size / RATE, abs=1e-3)
        assert all(a["end_s"] == b["start_s"] for a, b in zip(segments, segments[1:], strict=False))
        assert all(1.0 <= s["end_s"] - s["start_s"] <= 20.0 for s in segments)
        assert answer["text"] == join_texts([s["text"] for s in segments])
        timings = answer["timings_ms"]  # the request's own span: its segments' batches overlap, not summed
        assert timings["queue"] + timings["inference"] <= timings["total"]
        spans = app.state.service.splitters["asr"].spans(recording, RATE)  # the registry's splitter, as served
        assert [(s["start_s"], s["end_s"]) for s in segments] == [(round(a / RATE, 3), round(b / RATE, 3))
                                                                  for a, b in spans]
        # operators see how sure the set was: one observation, the mean of the words' confidences
        confidence = {"endpoint": "asr"}
        assert answer["words"] and metric(app, "elp_answer_confidence_count", confidence) == 1
        assert metric(app, "elp_answer_confidence_sum", confidence) == pytest.approx(
            sum(w["confidence"] for w in answer["words"]) / len(answer["words"]), abs=1e-9)
        assert (await client.post("/emotion", files=clip_files(wav(recording[: 5 * RATE])))).status_code == 200
        assert metric(app, "elp_answer_confidence_count", {"endpoint": "emotion"}) == 0  # it gives none
        words = answer["words"]  # each word once, in order, inside the recording, placed in its segment
        assert [w["word"] for w in words] == answer["text"].split()
        assert all(0 <= w["start_s"] < w["end_s"] <= answer["duration_s"] + 0.001 for w in words)  # ms rounding
        assert all(a["start_s"] <= b["start_s"] for a, b in zip(words, words[1:], strict=False))
        for segment, (start, end) in zip(segments, spans, strict=True):  # ordinary rows: answered as if sent alone
            alone = (await client.post("/asr", files=clip_files(wav(recording[start:end])))).json()
            assert "segments" not in alone and join_texts([alone["text"]]) == segment["text"]
            inside = [w for w in words if segment["start_s"] <= w["start_s"] < segment["end_s"]]
            assert [w["word"] for w in inside] == [w["word"] for w in alone["words"]]
            for mine, own in zip(inside, alone["words"], strict=True):  # the same times, moved by the segment start
                assert mine["start_s"] == pytest.approx(own["start_s"] + segment["start_s"], abs=0.002)
                assert mine["end_s"] == pytest.approx(own["end_s"] + segment["start_s"], abs=0.002)


async def test_a_silent_recording_has_no_segments_and_silence_inside_one_is_skipped(tiny_store, tmp_path,
                                                                                     recording) -> None:
    settings = make_settings(*tiny_store, tmp_path)
    muted = np.zeros(30 * RATE, dtype=np.float32)
    async with running_app(settings) as (app, client):
        silent = (await client.post("/asr", files=clip_files(wav(np.zeros(45 * RATE, np.float32))))).json()
        assert silent["text"] == "" and silent["segments"] == [] and silent["duration_s"] == 45.0
        rows_before = metric(app, "elp_inference_rows_total", {"task": "asr"})
        answer = (await client.post("/asr", files=clip_files(wav(np.concatenate([recording[: 9 * RATE], muted,
                                                                                recording[: 9 * RATE]]))))).json()
        # the speech either side is read, the muted 30 s (9-39 s) are not: no segment reaches into them
        spans = [(s["start_s"], s["end_s"]) for s in answer["segments"]]
        assert spans[0][0] < 1.0 and spans[-1][1] > 47.0
        assert all(end <= 9.5 or start >= 38.5 for start, end in spans), spans
        assert metric(app, "elp_inference_rows_total", {"task": "asr"}) - rows_before == len(answer["segments"])


async def test_a_clip_without_sound_is_answered_no_words_without_the_model(tiny_store, tmp_path) -> None:
    """The shipped ASR sets make words of silence ("he is so", "you"): /asr answers it without the model,
    unless the deployment's floor says the clip has sound."""
    hiss = (1e-4 * np.random.default_rng(0).standard_normal(5 * RATE)).astype(np.float32)  # -80 dBFS
    rows = {"task": "asr"}
    async with running_app(make_settings(*tiny_store, tmp_path)) as (app, client):
        for clip in (np.zeros(5 * RATE, np.float32), hiss):
            answer = (await client.post("/asr", files=clip_files(wav(clip)))).json()
            assert answer["text"] == "" and "segments" not in answer and answer["duration_s"] == 5.0
            assert "words" not in answer  # nothing was read, so nothing aligned
        assert metric(app, "elp_inference_rows_total", rows) == 0
        assert metric(app, "elp_answer_confidence_count", {"endpoint": "asr"}) == 0  # nothing to judge
    async with running_app(make_settings(*tiny_store, tmp_path, speech_floor_dbfs=-95.0)) as (app, client):
        assert (await client.post("/asr", files=clip_files(wav(hiss)))).status_code == 200
        assert metric(app, "elp_inference_rows_total", rows) == 1  # above this deployment's floor: read


class FailsFirstBatch:
    """Wraps the real model; its first batch raises (a GPU fault in the middle of a long recording)."""

    def __init__(self, model) -> None:
        self._model, self.calls = model, 0

    def head_outputs(self, waveforms, adapter_keys):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("injected fault")
        return self._model.head_outputs(waveforms, adapter_keys)

    def __getattr__(self, name: str):
        return getattr(self._model, name)


async def test_a_failing_segment_fails_the_recording_and_its_queued_segments_are_not_run(tiny_store, tmp_path,
                                                                                         recording) -> None:
    settings = make_settings(*tiny_store, tmp_path, max_batch_size=1, model_workers=1, max_wait_ms=0.0)
    async with running_app(settings) as (app, client):
        worker = app.state.service.worker
        flaky = FailsFirstBatch(worker.model)
        worker.model = flaky
        assert_error(await client.post("/asr", files=clip_files(wav(recording))), 500, "internal")
        segments = len(app.state.service.splitters["asr"].spans(recording, RATE))
        for _ in range(200):  # the worker drops the cancelled jobs as it reaches them
            if worker.queue_depth == 0:
                break
            await asyncio.sleep(0.01)
        assert worker.queue_depth == 0
        assert flaky.calls <= 3 < segments  # the failed batch, at most the next ones already started; not the rest
        worker.model = flaky._model
        assert (await client.post("/asr", files=clip_files(wav(recording)))).status_code == 200


async def test_other_tasks_keep_the_clip_limit_and_the_deployment_can_turn_long_form_off(
        tiny_store, tmp_path, recording) -> None:
    async with running_app(make_settings(*tiny_store, tmp_path, max_long_form_s=40.0)) as (_, client):
        assert_error(await client.post("/emotion", files=clip_files(wav(recording))), 413, "payload_too_large")
        too_long = assert_error(await client.post("/asr", files=clip_files(wav(recording))), 413, "payload_too_large")
        assert "maximum is 40 s" in too_long["message"]
        short = (await client.post("/asr", files=clip_files(wav(recording[: 12 * RATE])))).json()
        assert "segments" not in short
    async with running_app(make_settings(*tiny_store, tmp_path, max_long_form_s=0.0)) as (_, client):
        assert_error(await client.post("/asr", files=clip_files(wav(recording))), 413, "payload_too_large")
        # a clip under the clip limit but over one segment is then read whole, as before long-form existed
        whole = (await client.post("/asr", files=clip_files(wav(recording[: 25 * RATE])))).json()
        assert "segments" not in whole


def test_the_long_form_decoding_budget_is_bounded() -> None:
    """Minutes of audio get a larger budget than a clip, but a bounded one (a crafted header cannot claim more)."""
    from server.audio import LONG_FORM_SAMPLES_PER_S, AudioLimits

    clip = AudioLimits(max_duration_s=30.0, min_duration_s=0.1)
    long = clip.for_long_form(300.0)
    assert long.max_duration_s == 300.0 and long.max_samples == 300 * LONG_FORM_SAMPLES_PER_S
    assert long.max_samples * 4 <= 120e6  # float32 bytes of the largest decode
    assert clip.for_long_form(10.0) == AudioLimits(30.0, 0.1, sample_budget=clip.max_samples)


def test_the_asr_answer_model_and_client_result_carry_segments() -> None:
    from clients.models import RESULT_TYPES

    assert "segments" in get_task("asr").answer_fields.model_fields
    assert "segments" in RESULT_TYPES["asr"].__dataclass_fields__
