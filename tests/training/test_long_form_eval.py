"""``training.long_form``: recordings made of manifest clips, and its figures from the real metric code."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

from elp.long_form import LongFormSplitter, join_texts
from tests.elp.test_long_form import speech_with_pauses
from training.data.manifest import ManifestRow
from training.long_form import build_recordings, evaluate, noise_floor, rates, transcribe
from training.metrics import char_errors, word_errors

RATE = 16000


@pytest.fixture
def rows(tmp_path) -> list[ManifestRow]:
    made = []
    for i in range(9):
        clip, _ = speech_with_pauses([1.5 + 0.3 * i], seed=i)
        clip = clip + (0.003 * (i + 1)) * np.random.default_rng(i).standard_normal(clip.size).astype(np.float32)
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, clip, RATE, subtype="FLOAT")
        made.append(ManifestRow(id=f"c{i}", path=str(path), duration_s=clip.size / RATE, split="test", task="asr",
                                speaker="s", text=f"word{i} and more"))
    return made


def test_recordings_join_consecutive_clips_with_noise_filled_pauses(rows) -> None:
    recordings = build_recordings(rows, recording_s=8.0, gap_s=(0.3, 0.5), seed=0)
    assert sum(len(r.clips) for r in recordings) == len(rows)
    assert [t for r in recordings for _, t in r.clips] == [row.text for row in rows]  # order kept
    assert recordings[0].reference == join_texts([t for _, t in recordings[0].clips])
    assert all(r.waveform.size / RATE >= 8.0 for r in recordings[:-1])
    first = recordings[0]
    pause = first.waveform[first.clips[0][0].size: first.clips[0][0].size + int(0.3 * RATE)]
    floor = min(noise_floor(first.clips[0][0]), noise_floor(first.clips[1][0]))
    assert 0 < float(np.sqrt(np.mean(pause ** 2))) == pytest.approx(floor, rel=0.2)  # not digital silence
    butted = build_recordings(rows, recording_s=8.0, gap_s=(0.0, 0.0), seed=0)
    assert butted[0].waveform.size == sum(c.size for c, _ in butted[0].clips)


def test_figures_come_from_the_served_splitting_and_the_metric_code(rows, tiny_backbone_dir) -> None:
    from elp import MultiAdapterModel, load_backbone
    from elp.testing import make_random_adapter_set

    model = MultiAdapterModel(load_backbone(str(tiny_backbone_dir("wavlm")))).eval()
    model.add_adapter_set("asr", make_random_adapter_set(model.backbone, task="asr", seed=1))
    recordings = build_recordings(rows, recording_s=10.0, gap_s=(0.4, 0.6), seed=0)
    splitter = replace(LongFormSplitter().for_detector("level"), max_segment_s=6.0, min_segment_s=1.0)  # stand-ins
    report = evaluate(model, "asr", recordings, [splitter], batch_size=2)
    baseline, segmented = report["rows"]
    references = [r.reference for r in recordings]
    one_by_one = [join_texts(transcribe(model, "asr", [c for c, _ in r.clips], 2)) for r in recordings]
    assert {k: baseline[k] for k in ("wer", "cer")} == rates(references, one_by_one)
    assert baseline["wer"] == round(100 * word_errors(references, one_by_one).rate, 2)
    assert segmented["segments"] == sum(len(splitter.spans(r.waveform, RATE)) for r in recordings)
    pieces = [join_texts(transcribe(model, "asr", [r.waveform[a:b] for a, b in splitter.spans(r.waveform, RATE)], 2))
              for r in recordings]
    assert segmented["cer"] == round(100 * char_errors(references, pieces).rate, 2)


def test_live_stream_rows_read_the_endpointers_utterances(spoken_clip, tmp_path, tiny_backbone_dir) -> None:
    from elp import MultiAdapterModel, load_backbone
    from elp.streaming import EndpointSettings
    from elp.testing import make_random_adapter_set
    from training.long_form import stream_spans

    texts = ["turn on the lights", "what time is it", "play some music", "close the door"]
    spoken = []
    for i, text in enumerate(texts):
        path = tmp_path / f"spoken{i}.wav"
        sf.write(path, spoken_clip(text), RATE, subtype="FLOAT")
        spoken.append(ManifestRow(id=f"s{i}", path=str(path), duration_s=1.0, split="valid", task="asr",
                                  speaker="s", text=text))
    model = MultiAdapterModel(load_backbone(str(tiny_backbone_dir("wavlm")))).eval()
    model.add_adapter_set("asr", make_random_adapter_set(model.backbone, task="asr", seed=1))
    recordings = build_recordings(spoken, recording_s=60.0, gap_s=(1.0, 1.2), seed=0)
    settings = EndpointSettings(partial_interval_s=0)
    report = evaluate(model, "asr", recordings, [], batch_size=2, streams=[settings])
    _, streamed = report["rows"]
    assert streamed["system"] == "live stream" and streamed["segments"] == len(texts)  # one utterance a sentence
    [recording] = recordings
    spans = stream_spans(settings)(recording.waveform)
    heard = join_texts(transcribe(model, "asr", [recording.waveform[a:b] for a, b in spans], 2))
    assert {k: streamed[k] for k in ("wer", "cer")} == rates([recording.reference], [heard])
