"""The ASR-only tools end to end on a tiny real backbone: cached refits of an ASR set (schedules, LM-chosen
epochs, the encoder-pass cache, frozen featurizers, augmented views), ``elp-add-lm`` and the error breakdown."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from elp import AdapterSet, MultiAdapterModel
from tests.training.tones import SR, tone


@pytest.fixture(scope="module")
def backbone_dir(tiny_backbone_dir):
    return tiny_backbone_dir("whisper")


@pytest.fixture(scope="module")
def asr_corpus(tmp_path_factory):
    """Four ASR clips (tones) with transcripts: enough to run the ASR-only tools end to end."""
    root = tmp_path_factory.mktemp("asr-corpus")
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    texts = {"train": ["turn on the lights", "open the door"], "valid": ["turn on the door"],
             "test": ["open the lights"]}
    rows = []
    for split, sentences in texts.items():
        for i, text in enumerate(sentences):
            path = f"audio/{split}-{i}.wav"
            sf.write(root / path, tone(150 + 30 * i, 0.6, rng), SR)
            rows.append({"id": f"{split}-{i}", "path": path, "duration_s": 0.6, "split": split, "task": "asr",
                         "speaker": "s", "text": text, "label": None, "meta": {}})
    (root / "asr.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.mark.slow
def test_cached_refit_of_an_asr_set_trains_l_and_the_ctc_head_only(asr_corpus, backbone_dir, tmp_path, capsys):
    from elp import load_backbone as load
    from elp.testing import make_random_adapter_set
    from training import cached

    make_random_adapter_set(load(backbone_dir), "asr", seed=0).save(tmp_path / "asr-set")
    cached.main([str(tmp_path / "asr-set"), "--out", str(tmp_path / "refit"), "--backbone", str(backbone_dir),
                 "--corpus", str(asr_corpus), "--epochs", "2", "--patience", "5"])
    before, after = AdapterSet.load(tmp_path / "asr-set"), AdapterSet.load(tmp_path / "refit")
    changed = {n for n, t in before.state_dict().items() if not torch.equal(t, after.state_dict()[n])}
    assert all(n.startswith(("featurizer", "head")) for n in changed), changed  # E and P never move
    metrics = after.config.metrics
    assert set(metrics["valid"]) == {"cer", "wer"} and set(metrics["before_refit"]["test"]) == {"cer", "wer"}
    assert metrics["valid"]["cer"] <= metrics["before_refit"]["valid"]["cer"]  # the best epoch, or the start
    assert after.config.training["refit"]["epochs"] == 2
    epochs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"epoch"')]
    assert [e["epoch"] for e in epochs] == [1, 2] and all(0 < e["loss"] < 1e4 for e in epochs)  # CTC ran


@pytest.mark.slow
def test_cosine_refit_records_its_schedule_and_saves_the_best_set_as_it_goes(asr_corpus, backbone_dir, tmp_path,
                                                                           monkeypatch):
    from elp import load_backbone as load
    from elp.testing import make_random_adapter_set
    from training import cached

    make_random_adapter_set(load(backbone_dir), "asr", seed=0).save(tmp_path / "asr-set")
    saved_while_training = []
    real_save = cached._save_best_so_far

    def spy(adapter_set, featurizer, out, history):
        real_save(adapter_set, featurizer, out, history)
        saved_while_training.append(AdapterSet.load(out))

    # Whether a tiny random head learns in 3 epochs is luck; the validation CERs are scripted instead
    # (evaluations: before on valid, before on test, then one per epoch): better, worse, better.
    real_evaluate, calls = cached.evaluate_cached, []
    scripted = {1: 1.0, 3: 0.9, 4: 0.95, 5: 0.8}

    def evaluate(*args, **kwargs):
        metrics = real_evaluate(*args, **kwargs)
        calls.append(len(calls) + 1)
        return metrics | {"cer": scripted[calls[-1]]} if calls[-1] in scripted else metrics

    monkeypatch.setattr(cached, "evaluate_cached", evaluate)
    monkeypatch.setattr(cached, "_save_best_so_far", spy)
    cached.main([str(tmp_path / "asr-set"), "--out", str(tmp_path / "refit"), "--backbone", str(backbone_dir),
                 "--corpus", str(asr_corpus), "--epochs", "3", "--patience", "5", "--lr", "5e-3",
                 "--schedule", "cosine", "--freeze-featurizer"])
    final = AdapterSet.load(tmp_path / "refit")
    assert final.config.training["refit"]["schedule"] == "cosine" and final.config.training["refit"]["finished"]
    assert len(saved_while_training) == 2  # after epochs 1 and 3, the two improvements
    partial = saved_while_training[-1]
    assert partial.config.training["refit"]["finished"] is False
    # the unfinished save carries the real featurizer, not the cached pass-through stand-in
    assert partial.featurizer.state_dict().keys() == final.featurizer.state_dict().keys()


@pytest.mark.slow
def test_refit_can_pick_its_epoch_by_the_lm_decoded_validation_score(asr_corpus, backbone_dir, tmp_path, capsys):
    from elp import load_backbone as load
    from elp.decoding import WordBigramLM
    from elp.testing import make_random_adapter_set
    from training import cached

    adapter_set = make_random_adapter_set(load(backbone_dir), "asr", seed=0)
    adapter_set.save(tmp_path / "no-lm")
    adapter_set.attach_language_model(WordBigramLM.build(["turn on the lights", "open the door"], beam_width=4))
    adapter_set.save(tmp_path / "with-lm")
    common = ["--backbone", str(backbone_dir), "--corpus", str(asr_corpus), "--epochs", "2", "--freeze-featurizer",
              "--lr", "5e-3", "--select", "lm"]
    with pytest.raises(SystemExit, match="language model"):
        cached.main([str(tmp_path / "no-lm"), "--out", str(tmp_path / "refit-no-lm"), *common])
    cached.main([str(tmp_path / "with-lm"), "--out", str(tmp_path / "refit"), *common])
    epochs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"epoch"')]
    for epoch in epochs:  # the selection value is the LM's mean of CER and WER, reported beside greedy CER
        assert 0 <= epoch["valid_lm_cer"] <= epoch["valid_lm_mean"] * 2 and "valid_cer" in epoch
    refit = AdapterSet.load(tmp_path / "refit")
    assert refit.config.training["refit"]["select"] == "lm" and refit.language_model is not None
    valid, before = refit.config.metrics["valid"], refit.config.metrics["before_refit"]["valid"]
    assert (valid["lm_cer"] + valid["lm_wer"]) <= (before["lm_cer"] + before["lm_wer"])  # best epoch, or the start


@pytest.mark.slow
def test_refits_reuse_the_encoder_pass_kept_in_the_cache_dir(asr_corpus, backbone_dir, tmp_path, monkeypatch):
    from elp import load_backbone as load
    from elp.testing import make_random_adapter_set
    from training import cached, feature_cache
    from training.data.manifest import read_manifest

    make_random_adapter_set(load(backbone_dir), "asr", seed=0).save(tmp_path / "asr-set")
    make_random_adapter_set(load(backbone_dir), "asr", seed=1).save(tmp_path / "other-set")
    store = tmp_path / "encoder-passes"
    common = ["--backbone", str(backbone_dir), "--corpus", str(asr_corpus), "--epochs", "1", "--augmented-views", "1",
              "--cache-dir", str(store)]
    cached.main([str(tmp_path / "asr-set"), "--out", str(tmp_path / "first"), *common])
    assert len(list(store.glob("*.safetensors"))) == 2  # the clean pass and the augmented view

    def encoder(*args, **kwargs):
        raise AssertionError("encoded again")

    real_encoder = feature_cache.encode_rows
    monkeypatch.setattr(feature_cache, "encode_rows", encoder)
    cached.main([str(tmp_path / "asr-set"), "--out", str(tmp_path / "second"), *common])
    first, second = AdapterSet.load(tmp_path / "first"), AdapterSet.load(tmp_path / "second")
    for name, tensor in first.state_dict().items():  # same cache, same seed: the same refit, bit for bit
        assert torch.equal(tensor, second.state_dict()[name]), name
    with pytest.raises(AssertionError, match="encoded again"):  # other E/P-adapters: another encoder pass
        cached.main([str(tmp_path / "other-set"), "--out", str(tmp_path / "third"), *common])

    # prosody statistics travel with the cached pass
    monkeypatch.setattr(feature_cache, "encode_rows", real_encoder)
    model = MultiAdapterModel(load(backbone_dir))
    model.add_adapter_set(cached.KEY, AdapterSet.load(tmp_path / "asr-set"))
    rows = read_manifest(asr_corpus / "asr.jsonl")
    fresh_prosody, kept_prosody = {}, {}
    fresh = cached.encode_rows_cached(str(tmp_path / "with-prosody"), model, rows, prosody=fresh_prosody)
    kept = cached.encode_rows_cached(str(tmp_path / "with-prosody"), model, rows, prosody=kept_prosody)
    assert fresh.keys() == kept.keys() == fresh_prosody.keys() == kept_prosody.keys()
    for path in fresh:
        assert all(torch.equal(a, b) for a, b in zip(fresh[path], kept[path], strict=True))
        assert torch.equal(fresh_prosody[path], kept_prosody[path])


@pytest.mark.slow
def test_cached_refit_with_a_frozen_featurizer_adds_context_blocks_to_the_ctc_head(asr_corpus, backbone_dir, tmp_path,
                                                                                   capsys):
    from elp import load_backbone as load
    from elp.testing import make_random_adapter_set
    from training import cached

    make_random_adapter_set(load(backbone_dir), "asr", seed=0).save(tmp_path / "asr-set")
    cached.main([str(tmp_path / "asr-set"), "--out", str(tmp_path / "refit"), "--backbone", str(backbone_dir),
                 "--corpus", str(asr_corpus), "--epochs", "2", "--patience", "5", "--lr", "1e-2",
                 "--freeze-featurizer", "--context-blocks", "2", "--context-kernel", "3"])
    before, after = AdapterSet.load(tmp_path / "asr-set"), AdapterSet.load(tmp_path / "refit")
    assert after.config.head.context_blocks == 2 and len(after.head.context) == 2
    old = before.state_dict()
    for name, tensor in after.state_dict().items():
        if not name.startswith("head."):  # E, P and the frozen L-adapters are the input set's, bit for bit
            assert torch.equal(tensor, old[name]), name
    assert after.config.training["refit"]["freeze_featurizer"] is True
    metrics = after.config.metrics
    assert metrics["valid"]["cer"] <= metrics["before_refit"]["valid"]["cer"]  # the best epoch, or the start
    epochs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"epoch"')]
    assert [e["epoch"] for e in epochs] == [1, 2] and all(0 < e["loss"] < 1e4 for e in epochs)  # CTC ran


@pytest.mark.slow
def test_cached_refit_with_augmented_views_trains_on_every_view(asr_corpus, backbone_dir, tmp_path, capsys):
    from elp import load_backbone as load
    from elp.testing import make_random_adapter_set
    from training import cached

    make_random_adapter_set(load(backbone_dir), "asr", seed=0).save(tmp_path / "asr-set")
    cached.main([str(tmp_path / "asr-set"), "--out", str(tmp_path / "refit"), "--backbone", str(backbone_dir),
                 "--corpus", str(asr_corpus), "--epochs", "1", "--augmented-views", "2", "--frame-mask-prob", "1",
                 "--batch-size", "1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert lines[0]["augmented_views"] == 2
    refit = AdapterSet.load(tmp_path / "refit").config.training["refit"]
    assert refit["augmented_views"] == 2 and refit["frame_mask_prob"] == 1.0


def test_augmented_views_differ_from_the_clean_pass_and_repeat_with_the_seed(asr_corpus, backbone_dir):
    from elp import load_backbone as load
    from elp.testing import make_random_adapter_set
    from training.data.manifest import filter_split, read_manifest
    from training.dataset import AugmentConfig
    from training.feature_cache import KEY, encode_rows

    model = MultiAdapterModel(load(backbone_dir)).eval()
    model.add_adapter_set(KEY, make_random_adapter_set(model.backbone, "asr", seed=0))
    rows = filter_split(read_manifest(asr_corpus / "asr.jsonl"), "train")
    config = AugmentConfig(speed_prob=0.0, noise_prob=1.0, reverb_prob=0.0)
    clean = encode_rows(model, rows)
    view, again = (encode_rows(model, rows, augment_config=config, seed=7) for _ in range(2))
    for row in rows:
        assert not torch.equal(clean[row.path][-1], view[row.path][-1])
        assert all(torch.equal(a, b) for a, b in zip(view[row.path], again[row.path], strict=True))


@pytest.mark.slow
def test_add_lm_tunes_on_valid_and_writes_a_set_that_decodes_with_it(asr_corpus, backbone_dir, tmp_path):
    from elp import load_backbone as load
    from elp.testing import make_random_adapter_set
    from training import lm

    root = asr_corpus
    make_random_adapter_set(load(backbone_dir), "asr", seed=0).save(tmp_path / "asr-set")
    assert lm.main([str(tmp_path / "asr-set"), "--out", str(tmp_path / "asr-lm"), "--backbone", str(backbone_dir),
                    "--corpus", str(root), "--general-words", "0", "--alphas", "0.5", "--betas", "1.0", "2.0",
                    "--unk-offsets", "-10", "-25"]) == 0
    adapter_set = AdapterSet.load(tmp_path / "asr-lm")
    assert adapter_set.config.language_model.alpha == 0.5
    assert adapter_set.config.language_model.unk_score_offset in (-10.0, -25.0)
    assert adapter_set.config.language_model.beta in (1.0, 2.0)
    assert "greedy" in adapter_set.config.metrics
    # the LM knows exactly the training words (no general vocabulary asked for)
    assert set(adapter_set.language_model.vocabulary()) - {"<s>", "</s>"} == {
        "turn", "on", "the", "lights", "open", "door"}
    # --keep-lm re-tunes the fusion weights, beam and look-ahead of that same LM without rebuilding it
    assert lm.main([str(tmp_path / "asr-lm"), "--out", str(tmp_path / "asr-retuned"), "--backbone", str(backbone_dir),
                    "--corpus", str(root), "--keep-lm", "--alphas", "0.9", "--betas", "0.5", "--unk-offsets", "-30",
                    "--beam-width", "8", "--no-lookahead", "--temperatures", "1.7"]) == 0
    retuned = AdapterSet.load(tmp_path / "asr-retuned")
    config = retuned.config.language_model
    assert (config.alpha, config.beta, config.unk_score_offset, config.beam_width, config.lookahead,
            config.temperature) == (0.9, 0.5, -30.0, 8, False, 1.7)
    for name, tensor in adapter_set.language_model.state_dict().items():
        assert torch.equal(retuned.language_model.state_dict()[name], tensor), name
    assert adapter_set.config.language_model.lookahead  # look-ahead is on unless switched off
    make_random_adapter_set(load(backbone_dir), "asr", seed=0).save(tmp_path / "no-lm")
    with pytest.raises(SystemExit, match="no language model"):
        lm.main([str(tmp_path / "no-lm"), "--backbone", str(backbone_dir), "--corpus", str(root), "--keep-lm"])
    # --lm-from: a set that came back from a GPU machine without its LM takes the home set's tensors
    assert lm.main([str(tmp_path / "no-lm"), "--out", str(tmp_path / "lm-from"), "--backbone", str(backbone_dir),
                    "--corpus", str(root), "--keep-lm", "--lm-from", str(tmp_path / "asr-lm"), "--alphas", "0.5",
                    "--betas", "1.0", "--unk-offsets", "-10"]) == 0
    borrowed = AdapterSet.load(tmp_path / "lm-from")
    assert "valid" not in AdapterSet.load(tmp_path / "no-lm").config.metrics  # like a soup: none of its own
    assert {"cer", "wer"} <= set(borrowed.config.metrics["valid"]) and "cer" in borrowed.config.metrics["test"]
    for name, tensor in adapter_set.language_model.state_dict().items():
        assert torch.equal(borrowed.language_model.state_dict()[name], tensor), name
    for name, tensor in AdapterSet.load(tmp_path / "no-lm").state_dict().items():
        assert torch.equal(borrowed.state_dict()[name], tensor), name  # its own weights untouched
    with pytest.raises(SystemExit, match="add --keep-lm"):
        lm.main([str(tmp_path / "no-lm"), "--backbone", str(backbone_dir), "--corpus", str(root),
                 "--lm-from", str(tmp_path / "asr-lm")])


@pytest.mark.slow
def test_add_lm_chooses_on_several_validation_sources_and_refuses_final_figure_data(asr_corpus, backbone_dir,
                                                                                  tmp_path, capsys):
    from elp import load_backbone as load
    from elp.testing import make_random_adapter_set
    from training import lm

    make_random_adapter_set(load(backbone_dir), "asr", seed=0).save(tmp_path / "asr-set")
    rows = [json.loads(line) for line in (asr_corpus / "asr.jsonl").read_text().splitlines()]
    for name, role in [("natural", "valid"), ("far", None)]:  # a validation suite, and a final-figure suite
        folder = tmp_path / name
        folder.mkdir()
        (folder / "suite.json").write_text(json.dumps({"suite": name} | ({"role": role} if role else {})))
        clips = [{**r, "path": str(asr_corpus / r["path"]), "split": "valid"} for r in rows if r["split"] == "train"]
        (folder / "asr.jsonl").write_text("".join(json.dumps(r) + "\n" for r in clips))
    common = [str(tmp_path / "asr-set"), "--backbone", str(backbone_dir), "--corpus", str(asr_corpus),
              "--general-words", "0", "--alphas", "0.5", "--betas", "1.0", "2.0", "--unk-offsets", "-10",
              "--select", "wer"]
    assert lm.main([*common, "--out", str(tmp_path / "chosen"),
                    "--valid-data", f"natural={tmp_path / 'natural' / 'asr.jsonl'}"]) == 0
    chosen_on = AdapterSet.load(tmp_path / "chosen").config.metrics["lm_chosen_on"]
    assert set(chosen_on["sources"]) == {"valid", "natural"} and chosen_on["select"] == "wer"
    assert chosen_on["manifests"] == {"natural": str(tmp_path / "natural" / "asr.jsonl")}
    assert all(set(m) == {"cer", "wer"} for m in chosen_on["sources"].values())
    assert "natural CER" in capsys.readouterr().out  # every setting is scored on each source
    with pytest.raises(SystemExit, match="may not choose"):
        lm.main([*common, "--valid-data", f"far={tmp_path / 'far' / 'asr.jsonl'}"])
    with pytest.raises(SystemExit, match="NAME=MANIFEST"):
        lm.main([*common, "--valid-data", str(tmp_path / "natural" / "asr.jsonl")])


def test_text_lines_are_normalised_and_lose_every_line_holding_a_held_out_transcript(tmp_path):
    from training.lm import text_lines

    (tmp_path / "a.txt").write_text("Turn ON the lights, please!\n\nyou should open the door now\n")
    (tmp_path / "b.txt").write_text("reopen the doors\nopen the door\n")
    kept, dropped = text_lines([str(tmp_path / "a.txt"), str(tmp_path / "b.txt")], {"open the door"})
    assert kept == ["turn on the lights please", "reopen the doors"]  # whole words: "reopen the doors" stays
    assert dropped == 2


@pytest.mark.slow
def test_add_lm_learns_words_from_extra_text_but_never_from_held_out_lines(asr_corpus, backbone_dir, tmp_path,
                                                                          capsys):
    from elp import load_backbone as load
    from elp.testing import make_random_adapter_set
    from training import lm

    make_random_adapter_set(load(backbone_dir), "asr", seed=0).save(tmp_path / "asr-set")
    # the second line holds the validation transcript "turn on the door": it must not teach "quickly"
    (tmp_path / "domain.txt").write_text("Dim the lamp\nplease turn on the door quickly\n")
    common = [str(tmp_path / "asr-set"), "--backbone", str(backbone_dir), "--corpus", str(asr_corpus),
              "--general-words", "0", "--alphas", "0.5", "--betas", "1.0", "--unk-offsets", "-10"]
    assert lm.main([*common, "--out", str(tmp_path / "with-text"), "--text", str(tmp_path / "domain.txt")]) == 0
    assert '"dropped_holding_held_out": 1' in capsys.readouterr().out
    vocabulary = set(AdapterSet.load(tmp_path / "with-text").language_model.vocabulary()) - {"<s>", "</s>"}
    assert vocabulary == {"turn", "on", "the", "lights", "open", "door", "dim", "lamp"}
    with pytest.raises(SystemExit, match="keep"):
        lm.main([*common, "--keep-lm", "--text", str(tmp_path / "domain.txt")])


@pytest.mark.slow
def test_add_lm_interpolates_a_background_arpa_and_records_it(asr_corpus, backbone_dir, tmp_path):
    from elp import load_backbone as load
    from elp.testing import make_random_adapter_set
    from training import lm

    (tmp_path / "bg.arpa").write_text(
        "\\data\\\nngram 1=5\nngram 2=2\n\n\\1-grams:\n-99 <s> -0.2\n-1 </s>\n-0.6 the -0.3\n-0.9 kettle\n"
        "-1.2 NASA\n\n\\2-grams:\n-0.2 <s> the\n-0.1 the kettle\n\n\\end\\\n")
    make_random_adapter_set(load(backbone_dir), "asr", seed=0).save(tmp_path / "asr-set")
    assert lm.main([str(tmp_path / "asr-set"), "--out", str(tmp_path / "asr-lm"), "--backbone", str(backbone_dir),
                    "--corpus", str(asr_corpus), "--general-words", "0", "--alphas", "0.5", "--betas", "1.0",
                    "--unk-offsets", "-10", "--background-arpa", str(tmp_path / "bg.arpa"),
                    "--interpolations", "0.4"]) == 0
    language_model = AdapterSet.load(tmp_path / "asr-lm").language_model
    words = set(language_model.vocabulary())
    # the background brings its words (only those the CTC vocabulary can spell) and its pairs
    assert {"kettle", "turn", "lights"} <= words and "NASA" not in words
    assert language_model.log10_prob("the", "kettle") > language_model.log10_prob("the", "door")
    assert language_model.config.num_trigrams == 0


def test_add_lm_builds_a_trigram_level_from_the_text_and_the_background(asr_corpus, backbone_dir, tmp_path):
    from elp import load_backbone as load
    from elp.testing import make_random_adapter_set
    from training import lm

    (tmp_path / "bg.arpa").write_text(
        "\\data\\\nngram 1=4\nngram 2=2\nngram 3=1\n\n\\1-grams:\n-99 <s> -0.2\n-1 </s>\n-0.6 the -0.3\n"
        "-0.9 kettle\n\n\\2-grams:\n-0.2 <s> the -0.1\n-0.1 the kettle\n\n\\3-grams:\n-0.05 <s> the kettle\n"
        "\n\\end\\\n")
    make_random_adapter_set(load(backbone_dir), "asr", seed=0).save(tmp_path / "asr-set")
    common = [str(tmp_path / "asr-set"), "--backbone", str(backbone_dir), "--corpus", str(asr_corpus),
              "--general-words", "0", "--alphas", "0.5", "--betas", "1.0", "--unk-offsets", "-10",
              "--background-arpa", str(tmp_path / "bg.arpa"), "--interpolations", "0.4"]
    assert lm.main([*common, "--out", str(tmp_path / "bigram")]) == 0
    assert lm.main([*common, "--out", str(tmp_path / "trigram"), "--order", "3"]) == 0
    bigram = AdapterSet.load(tmp_path / "bigram").language_model
    trigram = AdapterSet.load(tmp_path / "trigram").language_model
    assert bigram.config.num_trigrams == 0 < trigram.config.num_trigrams
    assert trigram.config.num_bigrams == bigram.config.num_bigrams  # the same pairs under the new level
    # the background's one triple now scores "kettle" at the start of a sentence above the bigram's guess
    assert trigram.log10_prob(("<s>", "the"), "kettle") > bigram.log10_prob(("<s>", "the"), "kettle")


def test_condition_groups_follow_the_corpus_meta():
    from training.breakdown import condition_groups

    groups = condition_groups({"synth": "flite", "noise": "babble", "snr_db": 7.5, "reverb": True}, "spk-test-001")
    assert groups == ["all", "speaker=unseen", "synth=flite", "noise=babble", "snr<12dB", "reverb=True"]
    clean = condition_groups({"synth": "espeak", "noise": "none", "snr_db": None, "reverb": False}, "spk-train-004")
    assert clean[1] == "speaker=seen" and clean[4] == "snr>=12dB or clean"


@pytest.mark.slow
def test_breakdown_scores_every_group_against_the_same_predictions(asr_corpus, backbone_dir, tmp_path):
    from elp import load_backbone as load
    from elp.testing import make_random_adapter_set
    from training.breakdown import breakdown
    from training.data.manifest import filter_split, read_manifest
    from training.evaluation import evaluate_set

    model = MultiAdapterModel(load(backbone_dir))
    model.add_adapter_set("set", make_random_adapter_set(model.backbone, "asr", seed=0))
    table = breakdown(model, "set", asr_corpus, "train")
    rows = filter_split(read_manifest(asr_corpus / "asr.jsonl"), "train")
    assert table["all"]["clips"] == len(rows) == table["speaker=unseen"]["clips"]  # speaker "s" is no spk-train
    assert table["all"]["cer"] == round(evaluate_set(model, "set", rows)["cer"], 4)


def test_the_telephone_augmentation_leaves_only_the_phone_band() -> None:
    from training.dataset import SAMPLE_RATE, AugmentConfig, augment

    rng = np.random.default_rng(0)
    wide = (0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
    off = AugmentConfig(speed_prob=0.0, noise_prob=0.0, reverb_prob=0.0, gain_db=(0.0, 0.0))
    phone = AugmentConfig(speed_prob=0.0, noise_prob=0.0, reverb_prob=0.0, gain_db=(0.0, 0.0), telephone_prob=1.0)
    assert np.array_equal(augment(wide, np.random.default_rng(1), off), wide)  # off by default: clip untouched
    heard = augment(wide, np.random.default_rng(1), phone)
    spectrum = np.abs(np.fft.rfft(heard)) ** 2
    hertz = np.fft.rfftfreq(heard.size, 1 / SAMPLE_RATE)
    assert heard.size == wide.size
    assert spectrum[hertz > 4500].sum() < 1e-3 * spectrum[(hertz > 500) & (hertz < 3000)].sum()  # 8 kHz sampling
    assert spectrum[hertz < 150].mean() < 0.05 * spectrum[(hertz > 500) & (hertz < 3000)].mean()  # no hum band


def test_the_rescoring_tool_chooses_the_second_pass_on_validation_and_changes_only_the_config(
        asr_corpus, backbone_dir, tmp_path, monkeypatch, capsys):
    """``python -m training.rescoring``: every (weight, bonus, n) scored on the valid split, the best written into
    the set's ``rescoring`` with what chose it; weights and LM untouched; a set without an LM refused."""
    from elp import load_backbone as load
    from elp.decoding import WordBigramLM
    from elp.testing import make_random_adapter_set, tiny_rescorer
    from training import rescoring

    found, asked = tiny_rescorer(backbone_dir), []
    monkeypatch.setattr(rescoring, "checkpoint_rescorer", lambda source, dtype: asked.append(dtype) or found)
    asr = make_random_adapter_set(load(backbone_dir), "asr", seed=0)
    asr.attach_language_model(WordBigramLM.build(["turn on the lights", "open the door"], alpha=0.5, beta=1.0,
                                                 beam_width=8, temperature=2.0))
    asr.save(tmp_path / "asr-lm")
    assert rescoring.main([str(tmp_path / "asr-lm"), "--out", str(tmp_path / "second"), "--backbone",
                           str(backbone_dir), "--corpus", str(asr_corpus), "--weights", "0.5", "2",
                           "--bonuses", "0", "--nbest", "2", "4"]) == 0
    assert capsys.readouterr().out.count("mean wer") == 4  # every setting of the grid, on the valid split
    assert asked == ["float32-exact"]  # chosen on the reference scores, not the served pass' int8 normalisers
    second = AdapterSet.load(tmp_path / "second")
    config = second.config.rescoring
    assert config.weight in (0.5, 2.0) and config.token_bonus == 0.0 and config.nbest in (2, 4)
    chosen_on = second.config.metrics["rescoring_chosen_on"]
    assert set(chosen_on["sources"]) == {"valid"} and chosen_on["weight"] == config.weight
    before = AdapterSet.load(tmp_path / "asr-lm")
    for name, tensor in before.state_dict().items():
        assert torch.equal(second.state_dict()[name], tensor), name
    assert before.config.rescoring is None  # --out: the input set is not rewritten
    make_random_adapter_set(load(backbone_dir), "asr", seed=0).save(tmp_path / "no-lm")
    with pytest.raises(SystemExit, match="word LM"):
        rescoring.main([str(tmp_path / "no-lm"), "--backbone", str(backbone_dir), "--corpus", str(asr_corpus)])
    # --by-precision: the grid's best with that many transcripts, kept beside the chosen setting for float32 passes;
    # beside an int8 encoder the grid's best reads 2, the chosen setting, which float32's would otherwise replace
    grid = ["--weights", "0.5", "2", "50", "--bonuses", "0", "--nbest", "2", "4"]
    assert rescoring.main([str(tmp_path / "asr-lm"), "--out", str(tmp_path / "both"), "--backbone", str(backbone_dir),
                           "--corpus", str(asr_corpus), *grid, "--by-precision", "float32=4", "float32@int8=2"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " nbest 4: " in line]
    best_of_two = min(lines, key=lambda line: float(line.rsplit(" ", 1)[1]))  # the first of equals, as the tool
    weight = float(best_of_two.split()[1])
    both = AdapterSet.load(tmp_path / "both").config.rescoring
    assert both.at_precision("float32").nbest == 4 and both.at_precision("float32").weight == weight
    assert both.nbest == 2 and both.by_precision["float32"]["nbest"] == 4  # the tiny grid's best reads 2 (ties: first)
    assert both.at_precision("bfloat16") is both  # the overall best, as without the option
    assert all(getattr(both, key) != value for key, value in both.by_precision.get("float32", {}).items())
    beside_int8 = both.at_precision("float32", "int8")
    assert (beside_int8.nbest, beside_int8.weight) == (both.nbest, both.weight) and "float32@int8" in both.by_precision
    for wrong, message in [("float32=8", "one of --nbest"), ("float16=2", "keys must be among"),
                           ("float32@int4=2", "keys must be among")]:
        with pytest.raises(SystemExit, match=message):
            rescoring.main([str(tmp_path / "asr-lm"), "--backbone", str(backbone_dir), "--corpus", str(asr_corpus),
                            *grid, "--by-precision", wrong])
