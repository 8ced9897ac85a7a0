"""The intent set's text branch (elp.text_intent): stored as data, loaded strictly, equal in mixed
batches and alone, fused in post-processing; sets without one answer as before."""

from __future__ import annotations

import json

import pytest
import torch

from elp import AdapterSet, MultiAdapterModel
from elp.adapter_files import safetensors_totals
from elp.errors import AdapterFormatError, ConfigError
from elp.heads.pooled import slot_incidence
from elp.string_table import split_strings
from elp.tasks.intent import SlotScorer
from elp.testing import make_random_adapter_set, seeded_waveform, spelled_log_probs
from elp.text_intent.branch import TranscriptIntentReader, attach_text_branch, pack_row, unpack_row
from elp.text_intent.features import base_forms, lexicon_entry, transcript_features

LABELS = ["activate_lights_kitchen", "deactivate_lights_kitchen", "increase_volume_none", "decrease_volume_none"]
SLOTS = ["action", "object", "location"]
FEATURES = ["w:on", "w:off", "w:louder", "s:v:1", "c:<on"]
LEXICON = {"switch on": ["s:v:1"], "illuminate": ["s:v:1"]}


def slot_values() -> list[str]:
    return [sorted({label.split("_")[i] for label in LABELS})[j]
            for i in range(3) for j in range(len({label.split("_")[i] for label in LABELS}))]


def classifier_weights(strength: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights that read "on"/"switch on"/"illuminate" as activate, "off" as deactivate, "louder" as increase."""
    values = slot_values()
    weights = torch.zeros(len(FEATURES), len(values))
    for feature, value in (("w:on", "activate"), ("s:v:1", "activate"), ("w:off", "deactivate"),
                           ("w:louder", "increase"), ("w:louder", "volume")):
        weights[FEATURES.index(feature), values.index(value)] = strength
    return weights, torch.zeros(len(values))


def shares_e_and_p(adapter_set: AdapterSet, asr: AdapterSet) -> AdapterSet:
    """As the shipped intent set was built: the ASR set's E- and P-adapters (one routing group for both)."""
    adapter_set.load_state_dict(asr.backbone_change_state(), strict=False)
    return adapter_set


def intent_with_text(backbone, text_weight: float = 1.0, seed: int = 4) -> tuple[AdapterSet, AdapterSet]:
    asr = make_random_adapter_set(backbone, "asr", seed=1, context_blocks=1, context_kernel=3)
    intent = shares_e_and_p(make_random_adapter_set(backbone, "intent", labels=LABELS, seed=seed), asr)
    intent.config.slot_names = SLOTS
    weights, bias = classifier_weights()
    return attach_text_branch(intent, asr, FEATURES, LEXICON, weights, bias, text_weight, source="asr-test"), asr


def test_features_reduce_inflections_and_read_two_word_terms():
    assert base_forms("lights")[:2] == ["lights", "light"] and "dim" in base_forms("dimmed") + ["dim"]
    assert lexicon_entry("illuminated", LEXICON) == ["s:v:1"]  # ed -> "illuminate" via the e rule
    features = transcript_features("please switch on", LEXICON)
    assert "b:switch on" in features and "s:v:1" in features and "c:<on" in features
    assert split_strings(b"a\nb c", 2) == ["a", "b c"]
    with pytest.raises(ValueError):
        split_strings(b"a\nb", 3)


def test_text_branch_saves_as_data_and_loads_strictly(backbone, tmp_path):
    intent, _ = intent_with_text(backbone)
    intent.save(tmp_path / "set")
    config = json.loads((tmp_path / "set" / "adapter_config.json").read_text())
    assert config["text_branch"]["num_features"] == len(FEATURES) and config["text_branch"]["source"] == "asr-test"
    loaded = AdapterSet.load(tmp_path / "set")
    classifier = loaded.text_branch.classifier()
    assert classifier.lexicon == LEXICON and list(classifier.index) == FEATURES
    for name, tensor in intent.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)
    # a config whose sizes disagree with the stored tables is refused
    config["text_branch"]["num_features"] += 1
    (tmp_path / "set" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterFormatError):
        AdapterSet.load(tmp_path / "set")


def test_only_tasks_that_support_it_carry_a_text_branch(backbone):
    asr = make_random_adapter_set(backbone, "asr", seed=1)
    emotion = make_random_adapter_set(backbone, "emotion", seed=2)
    weights, bias = classifier_weights()
    with pytest.raises((ConfigError, ValueError)):
        attach_text_branch(emotion, asr, FEATURES, LEXICON, weights, bias, 1.0)
    assert emotion.config.text_branch is None and emotion.text_branch is None


def test_mixed_batch_with_a_text_branch_equals_each_row_alone(backbone):
    intent, asr = intent_with_text(backbone)
    plain = shares_e_and_p(make_random_adapter_set(backbone, "intent", labels=LABELS, seed=4), asr)  # no branch
    emotion = make_random_adapter_set(backbone, "emotion", method="ep", seed=3)
    model = MultiAdapterModel(backbone)
    for key, adapter_set in (("int-text", intent), ("asr", asr), ("int-plain", plain), ("emo", emotion)):
        model.add_adapter_set(key, adapter_set)
    keys = ["int-text", "asr", "int-plain", "emo", "int-text"]
    waves = [seeded_waveform(0.5 + 0.2 * i, seed=30 + i) for i in range(len(keys))]
    mixed = model.head_outputs(waves, keys)
    for row, key in enumerate(keys):
        alone = model.head_outputs([waves[row]], [key])[0]
        torch.testing.assert_close(mixed[row].output, alone.output, atol=1e-5, rtol=1e-5)
    # the packed row holds the plain set's logits and the ASR set's own CTC log-probs of that clip
    logits, log_probs = unpack_row(mixed[0].output, len(LABELS), len(asr.config.vocab))
    alone_plain = model.head_outputs([waves[0]], ["int-plain"])[0].output
    alone_asr = model.head_outputs([waves[0]], ["asr"])[0].output
    torch.testing.assert_close(logits, alone_plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(log_probs, alone_asr, atol=1e-5, rtol=1e-5)
    answers = model.predict(waves[:3], keys[:3])
    assert answers[0].text == asr.decode_ctc(alone_asr) and answers[2].text is None
    assert answers[0].label in LABELS and abs(sum(answers[0].scores.values()) - 1) < 1e-5


def reader(text_weight: float) -> TranscriptIntentReader:
    weights, bias = classifier_weights()
    from elp.text_intent.branch import TextClassifier

    classifier = TextClassifier(FEATURES, LEXICON, weights, bias, slot_incidence(LABELS, SLOTS))
    vocab = ["<blank>", " ", "'", *"abcdefghijklmnopqrstuvwxyz"]
    return TranscriptIntentReader(LABELS, vocab, classifier, text_weight)


def test_fusion_weight_zero_is_the_acoustic_answer_and_words_move_it():
    acoustic = torch.tensor([0.2, 1.0, 0.1, 0.0])  # acoustically: deactivate, weakly
    packed = pack_row(acoustic, spelled_log_probs("please illuminate the kitchen"))
    alone = SlotScorer(LABELS, SLOTS)(acoustic)
    silent = reader(0.0)(packed)
    assert silent["label"] == alone["label"] == "deactivate_lights_kitchen"
    assert silent["scores"] == pytest.approx(alone["scores"], abs=1e-6)
    heard = reader(1.0)(packed)
    assert heard["text"] == "please illuminate the kitchen" and heard["label"] == "activate_lights_kitchen"


def test_a_copied_language_model_makes_the_transcript_the_asr_sets_beam_search(backbone, tmp_path):
    from elp.decoding.bigram import WordBigramLM

    asr = make_random_adapter_set(backbone, "asr", seed=1)
    asr.attach_language_model(WordBigramLM.build(["turn on the lights", "illuminate the kitchen"], beam_width=4))
    intent = shares_e_and_p(make_random_adapter_set(backbone, "intent", labels=LABELS, seed=4), asr)
    intent.config.slot_names = SLOTS
    weights, bias = classifier_weights()
    attach_text_branch(intent, asr, FEATURES, LEXICON, weights, bias, 1.0, with_language_model=True)
    intent.save(tmp_path / "set")
    loaded = AdapterSet.load(tmp_path / "set")
    params, _ = safetensors_totals((tmp_path / "set" / "adapter_model.safetensors").read_bytes())
    state = loaded.state_dict()
    assert params == sum(t.numel() for n, t in state.items() if not n.startswith("text_branch.language_model."))
    assert loaded.post_processor.offload  # a beam search is worth a post-processing process
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("int", loaded)
    model.add_adapter_set("asr", asr)
    wave = seeded_waveform(0.9, seed=41)
    answer, heard = model.predict([wave, wave], ["int", "asr"])
    assert answer.text == heard.text  # the ASR set's own LM decoding of the same encoder pass
