"""Training the intent text branch (training.intent_text): the fit learns, the stored lexicon gives the
served classifier the features training saw, held-out phrasings are never trained on, and the cached
transcripts are the ASR set's own decoding."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from elp import AdapterSet, load_backbone
from elp.heads import ctc_greedy_decode
from elp.testing import make_random_adapter_set
from elp.text_intent.branch import attach_text_branch
from training.corpus import wordnet
from training.intent_text.fit import FitSettings, TextExample, fit, text_logits
from training.intent_text.lexicon import WordNetLexicon, stored_lexicon
from training.intent_text.train import training_examples
from training.intent_text.transcripts import cache_file_for, decode_file
from training.suites.phrasings import held_out_set

LABELS = ["activate_lights_kitchen", "deactivate_lights_kitchen", "activate_lights_bedroom",
          "deactivate_lights_bedroom"]
SLOTS = ["action", "object", "location"]
EXAMPLES = [TextExample(text, label) for text, label in (
    ("turn on the kitchen lights", LABELS[0]), ("switch the kitchen light on", LABELS[0]),
    ("turn off the kitchen lights", LABELS[1]), ("kitchen lights off", LABELS[1]),
    ("turn on the bedroom lights", LABELS[2]), ("bedroom light on please", LABELS[2]),
    ("switch off the bedroom light", LABELS[3]), ("turn the bedroom lights off", LABELS[3]))]
SETTINGS = FitSettings(senses=2, feature_dropout=0.0, l2=1e-5, steps=150, lr=0.1)


def test_fit_learns_its_examples_and_reads_a_misspelt_location():
    model = fit(EXAMPLES, {}, LABELS, SLOTS, SETTINGS)
    guesses = text_logits(model, [ex.text for ex in EXAMPLES], {}).argmax(-1).tolist()
    assert guesses == [LABELS.index(ex.label) for ex in EXAMPLES]
    # "kitchn": no word feature, but its character trigrams still point at the kitchen
    scores = text_logits(model, ["lights on in the kitchn"], {})[0]
    assert LABELS[int(scores.argmax())] == "activate_lights_kitchen"


@pytest.mark.skipif(not wordnet.available(), reason="needs Debian's wordnet-base")
def test_the_stored_lexicon_gives_the_served_set_the_features_training_saw(tiny_backbone_dir, tmp_path):
    lexicon = WordNetLexicon(2)
    model = fit(EXAMPLES, lexicon, LABELS, SLOTS, SETTINGS)
    stored = stored_lexicon(2, model.index())
    assert "illuminate" in stored or "light up" in stored  # WordNet terms training never read
    backbone = load_backbone(tiny_backbone_dir("whisper"))
    asr = make_random_adapter_set(backbone, "asr", seed=1)
    intent = make_random_adapter_set(backbone, "intent", labels=LABELS, seed=2)
    intent.config.slot_names = SLOTS
    attach_text_branch(intent, asr, model.features, stored, model.slot_weights, model.slot_bias, 1.0)
    intent.save(tmp_path / "set")
    served = AdapterSet.load(tmp_path / "set").text_branch.classifier()
    texts = ["please illuminate the kitchen", "switching off bedroom lights", "lights on in the kitchn"]
    expected = text_logits(model, texts, lexicon)
    torch.testing.assert_close(torch.stack([served.logits(t) for t in texts]), expected, atol=1e-5, rtol=1e-5)


def test_training_text_leaves_held_out_phrasings_out(tmp_path):
    held_out = sorted(held_out_set())[0]
    rows = [{"id": "a", "path": "a.flac", "duration_s": 1.0, "split": "train", "task": "intent", "speaker": "s",
             "text": "turn on the kitchen lights", "label": LABELS[0], "meta": {}},
            {"id": "b", "path": "b.flac", "duration_s": 1.0, "split": "train", "task": "intent", "speaker": "s",
             "text": held_out, "label": LABELS[1], "meta": {}}]
    manifest = tmp_path / "intent.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    transcripts = [{"split": "train", "text": held_out, "asr": "heard", "label": LABELS[1]},
                   {"split": "train", "text": "turn on the kitchen lights", "asr": "turn of the kitchen",
                    "label": LABELS[0]}]
    examples = training_examples([str(manifest)], transcripts, use_transcripts=True)
    assert [ex.text for ex in examples] == ["turn on the kitchen lights", "turn of the kitchen"]


def test_cached_transcripts_are_the_asr_sets_best_path(tiny_backbone_dir, tmp_path):
    backbone = load_backbone(tiny_backbone_dir("whisper"))
    asr = make_random_adapter_set(backbone, "asr", seed=1, context_blocks=1, context_kernel=3)
    generator = torch.Generator().manual_seed(0)
    layers = backbone.identity.num_layers + 1
    states = [[torch.randn(frames, backbone.identity.hidden_size, generator=generator).half() for _ in range(layers)]
              for frames in (7, 12, 5)]
    save_file({f"{i}.{k}": s[k] for i, s in enumerate(states) for k in range(layers)}, tmp_path / "x.safetensors")
    file = cache_file_for(str(tmp_path), 3)
    texts = decode_file(asr.eval(), file, 3, batch_size=2)
    for state, text in zip(states, texts, strict=True):
        with torch.no_grad():
            alone = asr.head(asr.featurizer([s[None].float() for s in state]), torch.tensor([state[0].shape[0]]))[0]
        assert text == ctc_greedy_decode(alone, state[0].shape[0], asr.config.vocab)


def test_ctc_confidences_read_the_emitted_frames_only():
    from training.intent_text.fusion_search import ctc_confidences

    probs = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])  # blank, "a" 0.8, "b" 0.6
    mean, low = ctc_confidences(probs.log())
    assert mean == pytest.approx(0.7) and low == pytest.approx(0.6)
    assert ctc_confidences(torch.tensor([[0.0, -9.0]])) == (1.0, 1.0)  # nothing written: nothing doubted


def test_slot_log_probs_normalise_within_each_slot():
    from elp.heads.pooled import slot_incidence
    from training.intent_text.fusion_search import slot_log_probs

    incidence = slot_incidence(LABELS, ["action", "object", "location"])  # values: 2 actions, 1 object, 2 places
    per_slot = slot_log_probs(torch.randn(3, 5), incidence, [2, 1, 2])
    assert torch.allclose(per_slot[1], torch.zeros(3, 4))  # one object value: certain
    action = per_slot[0].exp()  # an intent's action probability; activate + deactivate of one place sum to 1
    assert torch.allclose(action[:, 0] + action[:, 1], torch.ones(3))


def test_cross_validation_never_scores_a_setting_on_the_clips_that_chose_it():
    from training.intent_text.fusion_search import cross_validated

    targets = torch.zeros(10, dtype=torch.long)
    # setting j answers clip j right and every other clip wrong: in-sample some setting looks perfect
    # on any one clip, held out every choice is wrong
    memorisers = [torch.tensor([[1.0, 0.0] if i == j else [0.0, 1.0] for i in range(10)]) for j in range(10)]
    assert cross_validated(memorisers, targets).sum() == 0
    honest = torch.tensor([[1.0, 0.0]] * 10)
    assert cross_validated([*memorisers, honest], targets).mean() == 1.0


def test_search_finds_the_confidence_weighted_fusion_where_the_confident_branch_wins():
    from training.intent_text.fusion_search import search

    generator = torch.Generator().manual_seed(0)
    clips_count, classes = 60, 4
    targets = torch.randint(0, classes, (clips_count,), generator=generator)
    agree = (torch.arange(clips_count) % 2).float()  # the two transcripts agree on every other clip
    wrong = (targets + 1) % classes
    onehot = torch.nn.functional.one_hot
    # where the transcripts agree the text is right and the acoustic head mildly wrong; elsewhere the
    # text is confidently wrong and the acoustic head right
    acoustic = torch.where(agree[:, None] > 0, 1.0 * onehot(wrong, classes), 2.0 * onehot(targets, classes)).float()
    text = torch.where(agree[:, None] > 0, 3.0 * onehot(targets, classes), 6.0 * onehot(wrong, classes)).float()
    zeros = torch.zeros(clips_count)
    clips = {"acoustic": acoustic, "text": text, "acoustic_max": acoustic.softmax(-1).max(-1).values,
             "text_max": text.softmax(-1).max(-1).values, "shipped_weight": torch.tensor(0.3), "agree": agree,
             "ctc_mean": zeros, "ctc_min": zeros, "known": zeros,
             **{f"slot_{i}": torch.zeros(clips_count, classes) for i in range(3)}}
    rows = {row["family"]: row for row in search(clips, targets, ["a"] * clips_count)}
    assert rows["w0 + w1 * agree"]["cv_accuracy"] == 100.0
    assert rows["one weight (shipped form)"]["cv_accuracy"] <= 50.0


def test_a_stored_lm_read_as_arpa_is_the_background_it_was():
    """Interpolating with weight 0 gives back the stored LM's probabilities (the domain LM's baseline)."""
    from elp.decoding.bigram import WordBigramLM
    from training.intent_text.domain_lm import lm_as_arpa

    base = WordBigramLM.build(["turn on the lights", "the weather is lovely", "turn the music off"],
                              {"lights": 1e-3, "music": 1e-3, "kitchen": 1e-4})
    same = WordBigramLM.build(["turn off the kitchen lights"], background=lm_as_arpa(base), interpolation=0.0)
    for history, word in (("turn", "on"), ("the", "lights"), ("<s>", "the"), ("kitchen", "lights"), ("off", "</s>")):
        assert same.log10_prob(history, word) == pytest.approx(base.log10_prob(history, word), abs=1e-9)
    domain = WordBigramLM.build(["turn off the kitchen lights"], background=lm_as_arpa(base), interpolation=0.5)
    assert domain.log10_prob("kitchen", "lights") > base.log10_prob("kitchen", "lights")


def test_a_stored_trigram_lm_read_as_arpa_keeps_its_two_word_histories():
    from elp.decoding.bigram import WordBigramLM
    from training.intent_text.domain_lm import lm_as_arpa

    base = WordBigramLM.build(["turn on the lights", "turn off the radio", "turn the music off"],
                              {"lights": 1e-3, "music": 1e-3, "kitchen": 1e-4}, order=3)
    arpa = lm_as_arpa(base)
    assert len(arpa.trigrams) == base.config.num_trigrams and arpa.bigram_backoffs
    same = WordBigramLM.build(["turn off the kitchen lights"], background=arpa, interpolation=0.0, order=3)
    for history, word in ((("on", "the"), "lights"), (("off", "the"), "lights"), (("<s>", "turn"), "on"),
                          (("the", "kitchen"), "lights"), (("off", "the"), "radio")):
        assert same.log10_prob(history, word) == pytest.approx(base.log10_prob(history, word), abs=1e-6)


def test_domain_text_leaves_held_out_validation_and_test_sentences_out(tmp_path):
    from training.intent_text.domain_lm import domain_sentences

    held_out = sorted(held_out_set())[0]
    texts = [("train", "turn on the kitchen lights"), ("train", "turn on the kitchen lights"),
             ("train", held_out), ("train", "please dim the lights now"), ("valid", "dim the lights"),
             ("test", "louder")]
    rows = [{"id": f"r{i}", "path": f"{i}.flac", "duration_s": 1.0, "split": split, "task": "intent",
             "speaker": "s", "text": text, "label": LABELS[0], "meta": {}} for i, (split, text) in enumerate(texts)]
    (tmp_path / "intent.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    kept, dropped = domain_sentences([str(tmp_path)], "abcdefghijklmnopqrstuvwxyz' ")
    assert kept == ["turn on the kitchen lights"]  # once; the guard's, the valid one's and the test one's out
    assert dropped == {"held_out": 1, "holds_valid_or_test": 1, "outside_alphabet": 0}


def test_the_branch_takes_another_sets_lm_only_when_it_decodes_with_one(tiny_backbone_dir, tmp_path):
    from elp.decoding.bigram import WordBigramLM
    from training.intent_text.train import main

    backbone = load_backbone(tiny_backbone_dir("whisper"))
    make_random_adapter_set(backbone, "asr", seed=1).save(tmp_path / "asr")
    make_random_adapter_set(backbone, "intent", labels=LABELS, seed=2).save(tmp_path / "intent")
    common = ["--intent", str(tmp_path / "intent"), "--asr", str(tmp_path / "asr"), "--corpus", str(tmp_path),
              "--transcripts", "t.jsonl", "--acoustic", "a.jsonl"]
    with pytest.raises(SystemExit, match="add --with-lm"):
        main([*common, "--lm-from", str(tmp_path / "asr")])
    with pytest.raises(SystemExit, match="carries no LM"):
        main([*common, "--with-lm", "--lm-from", str(tmp_path / "asr")])
    donor = make_random_adapter_set(backbone, "asr", seed=3)
    donor.attach_language_model(WordBigramLM.build(["turn on the lights"]))
    donor.save(tmp_path / "donor")
    with pytest.raises(FileNotFoundError):  # past the check: it reads the transcripts next
        main([*common, "--with-lm", "--lm-from", str(tmp_path / "donor")])
