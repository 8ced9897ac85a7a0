"""Intent sets from example sentences (training.intent_text.from_examples): malformed files are refused with
the reason, the set reads the ASR set's transcript on the ASR set's own E/P, and its answer is the text's
alone (the acoustic head, which heard no audio, adds nothing), for free-form and slot-shaped intents."""

from __future__ import annotations

import json

import pytest
import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.decoding.bigram import WordBigramLM
from elp.testing import make_random_adapter_set, seeded_waveform
from training.intent_text.from_examples import main, read_examples

FREE_FORM = {"order pizza": ["i'd like a pizza", "get me a large pepperoni"],
             "cancel_order": ["cancel my order", "never mind the food"],
             "track-order": ["where is my food", "how long until it arrives"]}


@pytest.mark.parametrize(("content", "reason"), [
    ([], "at least two intents"),
    ({"only": ["one intent"]}, "at least two intents"),
    ({"a/b": ["x"], "c": ["y"]}, "must be 1-64"),
    ({"a": [], "b": ["y"]}, "at least one sentence"),
    ({"a": "not a list", "b": ["y"]}, "at least one sentence"),
])
def test_malformed_example_files_are_refused_with_the_reason(tmp_path, content, reason):
    path = tmp_path / "examples.json"
    path.write_text(json.dumps(content))
    with pytest.raises(SystemExit, match=reason):
        read_examples(path, None)


def test_slot_shaped_labels_must_split_into_the_slots(tmp_path):
    path = tmp_path / "examples.json"
    path.write_text(json.dumps({"activate_lights_kitchen": ["lights on"], "activate_lights": ["on"]}))
    with pytest.raises(SystemExit, match="does not split"):
        read_examples(path, ["action", "object", "location"])


@pytest.fixture
def asr_with_lm(tiny_backbone_dir, tmp_path):
    backbone_dir = tiny_backbone_dir("whisper")
    asr = make_random_adapter_set(load_backbone(backbone_dir), "asr", seed=1)
    asr.attach_language_model(WordBigramLM.build([s for texts in FREE_FORM.values() for s in texts]))
    asr.save(tmp_path / "asr")
    return backbone_dir, tmp_path / "asr"


@pytest.mark.parametrize(("examples", "slots"), [
    (FREE_FORM, None),
    ({"activate_lights_kitchen": ["kitchen lights on"], "deactivate_lights_kitchen": ["kitchen lights off"],
      "activate_lights_bedroom": ["bedroom light on please"]}, ["action", "object", "location"]),
])
def test_a_set_built_from_sentences_answers_from_the_asr_transcript_alone(asr_with_lm, tmp_path, examples, slots):
    backbone_dir, asr_dir = asr_with_lm
    (tmp_path / "examples.json").write_text(json.dumps(examples))
    argv = [str(tmp_path / "examples.json"), "--asr", str(asr_dir), "--out", str(tmp_path / "set")]
    assert main([*argv, *(["--slots", *slots] if slots else [])]) == 0
    built, asr = AdapterSet.load(tmp_path / "set"), AdapterSet.load(asr_dir)
    assert built.config.labels == list(examples) and built.config.slot_names == slots
    assert built.config.training["from_examples"]["sentences"] == sum(len(v) for v in examples.values())
    for name, tensor in asr.backbone_change_state().items():  # the ASR set's E/P: the same encoder pass
        torch.testing.assert_close(built.backbone_change_state()[name], tensor)
    model = MultiAdapterModel(load_backbone(backbone_dir))
    model.add_adapter_set("intent", built)
    model.add_adapter_set("asr", asr)
    clip = seeded_waveform(seed=7, seconds=1.0)
    intent_answer, asr_answer = model.predict([clip, clip], ["intent", "asr"])
    assert intent_answer.text == asr_answer.text and asr_answer.text  # what /asr hears (not empty)
    text_probs = built.text_branch.classifier().logits(intent_answer.text).softmax(-1)
    torch.testing.assert_close(torch.tensor([intent_answer.scores[label] for label in examples]), text_probs,
                               atol=1e-5, rtol=1e-5)
    assert (intent_answer.slots is None) == (slots is None)


def test_an_asr_set_without_an_lm_is_refused(tiny_backbone_dir, tmp_path):
    make_random_adapter_set(load_backbone(tiny_backbone_dir("whisper")), "asr", seed=1).save(tmp_path / "asr")
    (tmp_path / "examples.json").write_text(json.dumps(FREE_FORM))
    with pytest.raises(SystemExit, match="has no LM"):
        main([str(tmp_path / "examples.json"), "--asr", str(tmp_path / "asr"), "--out", str(tmp_path / "set")])
