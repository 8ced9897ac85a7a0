"""training.identification_eval: half the voices enrolled per draw, every other clip a known or unknown probe, each
answered by the served task; the figures follow the threshold; a grid of offsets on test clips is refused."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from elp.tasks import EnrolledVoice, TaskRequest, get_task
from tests.training.tones import SR, tone
from training import identification_eval
from training.identification_eval import Voice, draw_outcomes, figures

CONFIG = SimpleNamespace(duration_thresholds=None, threshold=0.5)


def axis_voices(count: int, clips: int) -> dict[str, Voice]:
    """Voices whose clips point along their own axis (a little noise): own cosines near 1, others near 0."""
    rng = np.random.default_rng(0)
    voices = {}
    for axis in range(count):
        vectors = []
        for _ in range(clips):
            vector = torch.from_numpy(rng.normal(0, 0.05, count)).float()
            vector[axis] += 1
            vectors.append(torch.nn.functional.normalize(vector, dim=0))
        voices[f"v{axis}"] = Voice(vectors, [1.0] * clips)
    return voices


@pytest.mark.parametrize("offset, named", [(0.0, "right"), (-1.6, "everyone"), (0.6, "nobody")])
def test_probes_and_figures_follow_the_threshold(offset: float, named: str) -> None:
    spec = dataclasses.replace(get_task("identification"), threshold_offset=offset)
    voices = axis_voices(6, 5)
    outcomes = [o for draw in range(4)
                for o in draw_outcomes(spec, CONFIG, voices, 3, np.random.default_rng(draw))]
    result = figures(outcomes)
    # three voices enrolled from 3 of their 5 clips: 3 x 2 known probes, the other 3 x 5 clips unknown
    assert (result["known_probes"], result["unknown_probes"]) == (4 * 6, 4 * 15)
    assert result["rank1"] == 100.0  # the closed-set choice ignores the threshold
    expected = {"right": (100.0, 0.0, 100.0), "everyone": (100.0, 100.0, 50.0), "nobody": (0.0, 0.0, 50.0)}[named]
    assert (result["identified"], result["false_alarms"], result["balanced_accuracy"]) == expected
    assert result["not_named"] == (100.0 if named == "nobody" else 0.0)


def test_a_fixed_gallery_size_leaves_one_voice_unknown_at_least() -> None:
    spec = get_task("identification")
    voices = axis_voices(4, 5)
    outcomes = draw_outcomes(spec, CONFIG, voices, 3, np.random.default_rng(0), gallery_size=10)
    assert sum(truth is None for truth, _, _ in outcomes) == 5  # 3 voices enrolled, the fourth's 5 clips unknown


def write_suite(tmp_path, split: str) -> str:
    rows, rng = [], np.random.default_rng(1)
    for voice, f0 in enumerate((110.0, 150.0, 200.0, 260.0)):
        for index in range(5):
            path = tmp_path / f"v{voice}-{index}.wav"
            sf.write(path, tone(f0 * (1 + 0.01 * index), 1.2, rng), SR)
            rows.append({"id": path.stem, "path": str(path), "duration_s": 1.2, "split": split,
                         "task": "verification", "speaker": f"v{voice}", "text": None, "label": f"v{voice}",
                         "meta": {}})
    manifest = tmp_path / f"{split}.jsonl"
    manifest.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return str(manifest)


def test_a_suite_runs_end_to_end_on_served_embeddings(tiny_store, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ELP_SPEECH_DETECTOR", "level")  # tone stand-ins: the voice detector rightly refuses them
    backbone, store = tiny_store
    manifest = write_suite(tmp_path, "valid")
    report = identification_eval.evaluate(str(store / "verify-default"), tmp_path / "cache.pt", [f"v={manifest}:valid"],
                                          [0.0, 0.1], draws=2, clips=3, seed=0, backbone=str(backbone))
    suite = report["suites"]["v"]
    assert suite["voices"] == 4 and suite["clips"] == 20 and set(suite["by_offset"]) == {"0.0", "0.1"}
    for result in suite["by_offset"].values():
        assert (result["known_probes"], result["unknown_probes"]) == (2 * 4, 2 * 10)
    assert len(torch.load(tmp_path / "cache.pt")) == 20  # every clip embedded once, kept for the next run
    (tmp_path / "t").mkdir()
    test_manifest = write_suite(tmp_path / "t", "test")
    with pytest.raises(SystemExit, match="validation"):
        identification_eval.evaluate(str(store / "verify-default"), tmp_path / "cache.pt", [f"t={test_manifest}"],
                                     [0.0, 0.1], draws=1, clips=3, seed=0, backbone=str(backbone))


def test_the_gallery_slope_raises_the_bar_by_the_log_of_the_speakers_compared() -> None:
    """``gallery_slope`` (measured, served at 0): the threshold the best voice must reach grows with ln(N)."""
    spec = dataclasses.replace(get_task("identification"), threshold_offset=0.0, gallery_slope=0.04)
    assert spec.naming_threshold(CONFIG, {}, 2.0, 4.0, compared=1) == pytest.approx(0.5)
    assert spec.naming_threshold(CONFIG, {}, 2.0, 4.0, compared=20) == pytest.approx(0.5 + 0.04 * np.log(20))
    voices = axis_voices(6, 5)
    probe = voices["v0"].embeddings[4]
    gallery = [EnrolledVoice(name, voice.embeddings[0], 1.0) for name, voice in voices.items()]
    answer = spec.respond(TaskRequest(config=CONFIG, rows=[SimpleNamespace(embedding=probe)], durations_s=[1.0],
                                      gallery=gallery))
    assert answer["threshold"] == pytest.approx(0.5 + 0.04 * np.log(6), abs=1e-4)
    assert get_task("identification").gallery_slope == 0.0  # rule R2 kept the constant (identification.md)
