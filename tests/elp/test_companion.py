"""A decoder label set with a companion classifier (elp.heads.companion, elp.convert.whisper_decoder_set
--companion, training.companion_weight): the answer is the decoder's log-probabilities plus the weighted
companion's, the companion reads the clip's frames of the shared pass (not the trailing zeros), rows answer as
alone, and sets that cannot work are refused."""

from __future__ import annotations

import dataclasses
import json

import pytest
import soundfile as sf
import torch
from transformers import WhisperForConditionalGeneration

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.convert.whisper_decoder_set import build_label_set, main, with_companion
from elp.errors import ConfigError
from elp.heads.config import CompanionConfig
from elp.testing import make_random_adapter_set, seeded_waveform
from training import companion_weight
from training.data.manifest import ManifestRow, write_manifest

EOT = 50
LABELS = ["de", "en", "fr"]


@pytest.fixture(scope="module")
def backbone(whisper_dir):
    return load_backbone(whisper_dir)


@pytest.fixture(scope="module")
def label_set(whisper_dir, backbone):
    whisper = WhisperForConditionalGeneration.from_pretrained(whisper_dir).eval()
    return build_label_set(whisper.model.decoder, backbone, [EOT, 1, 60, 61, 62], LABELS, trailing_silence_s=0.3)


@pytest.fixture(scope="module")
def classifier_dir(backbone, tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier")
    make_random_adapter_set(backbone, "language", method="none", labels=LABELS, seed=4).save(folder)
    return folder


@torch.inference_mode()
def test_the_answer_fuses_the_decoder_and_the_companion_on_the_clips_own_frames(label_set, classifier_dir,
                                                                                backbone, tmp_path):
    joined = with_companion(label_set, classifier_dir, weight=0.6)
    assert joined.config.companion.source.startswith(classifier_dir.name + "@")
    joined.save(tmp_path / "joined")
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("joined", AdapterSet.load(tmp_path / "joined"))
    model.add_adapter_set("alone", label_set)
    model.add_adapter_set("speaker", make_random_adapter_set(backbone, "verification", seed=2))
    clips = [seeded_waveform(0.7, seed=3), seeded_waveform(1.3, seed=4)]
    answers = model.predict([clips[0], clips[1], clips[1], clips[0]], ["joined", "joined", "alone", "speaker"])
    companion = model.adapter_sets["joined"].companion
    zeros = round(0.3 * 16000)
    for clip, answer in zip(clips, answers[:2], strict=True):
        assert answer.scores == pytest.approx(model.predict([clip], ["joined"])[0].scores, abs=1e-5)
        alone = model.predict([clip], ["alone"])[0]
        padded = torch.cat([clip, torch.zeros(zeros)])
        states = model.encode(padded[None], torch.tensor([padded.numel()]), ["joined"]).hidden_states
        frames = backbone.front_end_lengths(torch.tensor([clip.numel()]))
        assert int(frames) < states[0].shape[1]  # the zeros' frames exist and are left out
        own = companion(states, frames)[0].log_softmax(-1)
        decoder = torch.tensor([alone.scores[x] for x in LABELS]).log()
        expected = (decoder + 0.6 * own).softmax(-1)
        assert [answer.scores[x] for x in LABELS] == pytest.approx(expected.tolist(), abs=1e-4)


def test_a_weight_of_zero_answers_as_the_decoder_alone(label_set, classifier_dir, backbone):
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("zero", with_companion(label_set, classifier_dir, weight=0.0))
    model.add_adapter_set("alone", label_set)
    clip = seeded_waveform(1.1, seed=8)
    zero, alone = model.predict([clip, clip], ["zero", "alone"])
    assert zero.scores == pytest.approx(alone.scores, abs=1e-5)


def test_companions_that_cannot_work_are_refused(label_set, classifier_dir, backbone, tmp_path):
    other_labels = tmp_path / "other"
    make_random_adapter_set(backbone, "language", method="none", labels=["en", "es", "it"], seed=4).save(other_labels)
    with pytest.raises(ValueError, match="not language over"):
        with_companion(label_set, other_labels, 1.0)
    adapted = tmp_path / "adapted"
    make_random_adapter_set(backbone, "language", method="elp", labels=LABELS, seed=4).save(adapted)
    with pytest.raises(ValueError, match="plain weighted-sum classifier"):
        with_companion(label_set, adapted, 1.0)
    classifier = AdapterSet.load(classifier_dir)
    companion = CompanionConfig(head=classifier.config.head, weighted_sum_layers=[1, 2])
    with pytest.raises(ConfigError, match="decoder label set"):
        dataclasses.replace(classifier.config, companion=companion)
    with pytest.raises(ConfigError, match="weight must be"):
        CompanionConfig(head=classifier.config.head, weighted_sum_layers=[1], weight=-1.0)
    with pytest.raises(SystemExit):
        main([str(tmp_path / "ckpt"), str(tmp_path / "out"), "--companion", str(classifier_dir)])


def test_the_weight_is_chosen_on_validation_clips_and_written_into_the_set(label_set, classifier_dir, whisper_dir,
                                                                            tmp_path):
    with_companion(label_set, classifier_dir, weight=1.0).save(tmp_path / "joined")
    rows = []
    for index in range(6):
        path = tmp_path / "clips" / f"c{index}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, seeded_waveform(0.6 + 0.2 * index, seed=30 + index).numpy(), 16000)
        rows.append(ManifestRow(id=f"c{index}", path=f"clips/c{index}.wav", duration_s=1.0, split="valid",
                                task="language", speaker=f"s{index}", label=LABELS[index % 3]))
    write_manifest(rows, tmp_path / "language.jsonl")
    weights = ["0", "0.5", "2"]
    companion_weight.main([str(tmp_path / "joined"), "--valid", str(tmp_path), "--guard", str(tmp_path),
                           "--weights", *weights, "--backbone", str(whisper_dir), "--dtype", "float32",
                           "--out", str(tmp_path / "chosen")])
    chosen = AdapterSet.load(tmp_path / "chosen")
    record = chosen.config.training["companion_weight"]
    assert [row["weight"] for row in record["grid"]] == [0.0, 0.5, 2.0]
    assert chosen.config.companion.weight == record["chosen"]["weight"]
    best = max(row["valid"] for row in record["grid"])
    assert record["chosen"]["valid"] == best and record["chosen"]["weight"] == min(
        row["weight"] for row in record["grid"] if row["valid"] == best)
    # the grid's accuracy at the chosen weight is what the written set answers
    model = MultiAdapterModel(load_backbone(whisper_dir))
    model.add_adapter_set("chosen", chosen)
    answers = [model.predict([torch.from_numpy(sf.read(tmp_path / r.path, dtype="float32")[0])], ["chosen"])[0]
               for r in rows]
    right = sum(a.label == r.label for a, r in zip(answers, rows, strict=True))
    assert round(100 * right / len(rows), 2) == record["chosen"]["valid"]
    assert json.loads((tmp_path / "chosen" / "adapter_config.json").read_text())["companion"]["weight"] == \
        record["chosen"]["weight"]
