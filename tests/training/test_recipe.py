"""End to end on a tiny real backbone: train -> save -> load -> evaluate, resume, comparison table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from training import compare, evaluate, train

SR = 16000


def _tone(f0: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 4))
    return (0.3 * wave / np.abs(wave).max() + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Emotion-like classes carried by pitch and verification "speakers" by timbre, seeded."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    emotion, speakers = [], []
    classes = {"low": 110.0, "high": 330.0}
    for split, count in (("train", 12), ("valid", 8), ("test", 8)):
        for i in range(count):
            label = list(classes)[i % 2]
            path = f"audio/emo-{split}-{i}.wav"
            sf.write(root / path, _tone(classes[label] * rng.uniform(0.95, 1.05), rng.uniform(0.6, 1.0), rng), SR)
            emotion.append({"id": f"emo-{split}-{i}", "path": path, "duration_s": 1.0, "split": split,
                            "task": "emotion", "speaker": f"s{i % 3}", "text": None, "label": label, "meta": {}})
            speaker = f"{split}-spk{i % 4}"
            spk_path = f"audio/spk-{split}-{i}.wav"
            sf.write(root / spk_path, _tone(90 + 40 * (i % 4), rng.uniform(0.6, 1.0), rng), SR)
            speakers.append({"id": f"spk-{split}-{i}", "path": spk_path, "duration_s": 1.0, "split": split,
                             "task": "verification", "speaker": speaker, "text": None, "label": speaker, "meta": {}})
    for name, rows in (("emotion", emotion), ("verification", speakers)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def backbone_dir(tiny_backbone_dir):
    return tiny_backbone_dir("whisper")


def _train(corpus, backbone_dir, tmp_path, task, *extra):
    argv = ["--task", task, "--backbone", str(backbone_dir), "--corpus", str(corpus), "--method", "elp",
            "--out", str(tmp_path / f"{task}-set"), "--run-dir", str(tmp_path / f"run-{task}"), "--batch-size", "4",
            "--num-workers", "0", "--eval-every", "3", "--prompt-frames", "2", "--test", "--quiet", "--device", "cpu",
            *extra]
    return train.train(train.build_parser().parse_args(argv))


@pytest.mark.slow
def test_train_save_load_evaluate(corpus, backbone_dir, tmp_path):
    result = _train(corpus, backbone_dir, tmp_path, "emotion", "--max-steps", "9")
    assert result.steps == 9 and result.output
    adapter_set = AdapterSet.load(result.output)
    assert adapter_set.config.metrics["valid"]["accuracy"] == result.valid["accuracy"]
    assert adapter_set.config.training["steps"] == 9 and adapter_set.config.labels == ["high", "low"]
    assert (tmp_path / "run-emotion" / "training_curves.png").stat().st_size > 1000
    assert (tmp_path / "run-emotion" / "confusion_matrix.png").exists()
    out = tmp_path / "eval.json"
    evaluate.main([result.output, "--backbone", str(backbone_dir), "--corpus", str(corpus), "--out", str(out),
                   "--plots", str(tmp_path / "plots"), "--device", "cpu"])
    metrics = json.loads(out.read_text())[0]
    assert metrics["task"] == "emotion" and metrics["num_clips"] == 8
    assert metrics["accuracy"] == pytest.approx(result.test["accuracy"])
    model = MultiAdapterModel(load_backbone(backbone_dir))
    model.add_adapter_set("emotion", adapter_set)
    assert model.predict([torch.zeros(8000)], ["emotion"])[0].label in ("high", "low")


@pytest.mark.slow
def test_verification_set_gets_a_calibrated_threshold_and_resume_continues(corpus, backbone_dir, tmp_path):
    first = _train(corpus, backbone_dir, tmp_path, "verification", "--max-steps", "3")
    config = AdapterSet.load(first.output).config
    assert config.threshold is not None and -1.0 <= config.threshold <= 1.0
    assert config.threshold == pytest.approx(first.valid["eer_threshold"])
    resumed = _train(corpus, backbone_dir, tmp_path, "verification", "--max-steps", "6", "--resume")
    assert resumed.steps == 6
    history = json.loads((tmp_path / "run-verification" / "history.json").read_text())
    assert [h["step"] for h in history] == [3, 6]


@pytest.mark.slow
def test_full_fine_tuning_trains_the_backbone_but_writes_no_adapter_set(corpus, backbone_dir, tmp_path):
    result = _train(corpus, backbone_dir, tmp_path, "emotion", "--max-steps", "2", "--method", "full")
    assert result.output is None and result.trained_parameters > 50_000


def test_comparison_table_renders_from_results(tmp_path):
    rows = [{"task": "emotion", "method": "elp", "backbone": "pretrained", "trained_parameters": 1234, "steps": 5,
             "test": {"accuracy": 0.875, "unweighted_accuracy": 0.8}},
            {"task": "asr", "method": "l", "backbone": "random", "trained_parameters": 99, "steps": 5,
             "test": {"cer": 0.25, "wer": 0.5}}]
    (tmp_path / "comparison-emotion.jsonl").write_text(json.dumps(rows[0]) + "\n")
    (tmp_path / "comparison-asr.jsonl").write_text(json.dumps(rows[1]) + "\n")
    compare.main(["--table-only", "--out-dir", str(tmp_path)])
    table = (tmp_path / "comparison.md").read_text()
    assert "| emotion | elp | pretrained | 1,234 | accuracy | 87.50% |" in table
    assert "| asr | l | random | 99 | cer | 25.00% | wer | 50.00% |" in table


@pytest.mark.slow
def test_refit_on_a_cached_encoder_pass_keeps_e_and_p_and_records_both_results(corpus, backbone_dir, tmp_path):
    from training import cached

    trained = _train(corpus, backbone_dir, tmp_path, "emotion", "--max-steps", "3")
    cached.main([trained.output, "--out", str(tmp_path / "refit"), "--backbone", str(backbone_dir),
                 "--corpus", str(corpus), "--epochs", "3", "--patience", "5"])
    before, after = AdapterSet.load(trained.output), AdapterSet.load(tmp_path / "refit")
    for name, tensor in before.state_dict().items():
        if name.startswith(("e_adapters", "p_adapter")):
            assert torch.equal(tensor, after.state_dict()[name]), name
    metrics = after.config.metrics
    assert set(metrics) == {"valid", "test", "before_refit"}
    assert metrics["valid"]["accuracy"] >= metrics["before_refit"]["valid"]["accuracy"]  # best epoch or the start
    assert after.config.training["refit"]["epochs"] >= 1


@pytest.mark.slow
def test_head_pooling_flag_is_trained_and_saved(corpus, backbone_dir, tmp_path):
    result = _train(corpus, backbone_dir, tmp_path, "emotion", "--max-steps", "2", "--pooling", "stats")
    assert AdapterSet.load(result.output).config.head.pooling == "stats"


@pytest.mark.slow
def test_prosody_head_trains_saves_and_serves(corpus, backbone_dir, tmp_path):
    result = _train(corpus, backbone_dir, tmp_path, "emotion", "--max-steps", "6", "--prosody")
    loaded = AdapterSet.load(result.output)
    assert loaded.config.head.prosody and int(loaded.head.prosody_norm.batches_seen) > 0
    # the running statistics are the training clips' (110/330 Hz tones): pitch is about 9-21 semitones re 100 Hz
    assert 5.0 < float(loaded.head.prosody_norm.running_mean[0]) < 25.0
    model = MultiAdapterModel(load_backbone(backbone_dir))
    model.add_adapter_set("emotion", loaded)
    assert model.predict([torch.from_numpy(_tone(330.0, 0.8, np.random.default_rng(5)))], ["emotion"])[0].label in (
        "low", "high")


@pytest.mark.slow
def test_cached_refit_adds_a_warm_started_prosody_head(corpus, backbone_dir, tmp_path, capsys):
    from training import cached

    trained = _train(corpus, backbone_dir, tmp_path, "emotion", "--max-steps", "3")
    cached.main([trained.output, "--out", str(tmp_path / "refit"), "--backbone", str(backbone_dir),
                 "--corpus", str(corpus), "--epochs", "2", "--prosody", "--warm-start", "--dropout", "0.2"])
    after = AdapterSet.load(tmp_path / "refit")
    assert after.config.head.prosody and after.config.head.dropout == 0.2
    metrics = after.config.metrics  # warm start: the refit keeps the start unless validation improves
    assert metrics["valid"]["accuracy"] >= metrics["before_refit"]["valid"]["accuracy"]


def test_warm_start_gives_a_head_that_gained_prosody_the_old_heads_answers():
    from elp.heads import HeadConfig, build_head
    from elp.heads.prosody import NUM_PROSODY_FEATURES
    from training.refit_start import warm_start

    torch.manual_seed(0)
    old = build_head(HeadConfig(hidden_dim=16, pooling="stats"), "emotion", 8, 4).eval()
    new = build_head(HeadConfig(hidden_dim=16, pooling="stats", prosody=True, prosody_dim=4), "emotion", 8, 4).eval()
    features, lengths = torch.randn(3, 10, 8), torch.tensor([10, 7, 3])
    prosody = torch.randn(3, NUM_PROSODY_FEATURES) * 10
    assert not torch.allclose(new(features, lengths, prosody), old(features, lengths))
    warm_start(new, old)
    torch.testing.assert_close(new(features, lengths, prosody), old(features, lengths))
    other = build_head(HeadConfig(hidden_dim=12, pooling="stats"), "emotion", 8, 4)
    with pytest.raises(ValueError, match="cannot warm-start"):
        warm_start(other, old)


def test_speaker_prototypes_start_the_am_softmax_loss_below_random_class_weights(backbone_dir):
    from types import SimpleNamespace

    from elp.heads import AMSoftmaxLoss
    from elp.testing import make_random_adapter_set
    from training.feature_cache import head_outputs, speaker_prototypes

    backbone = load_backbone(backbone_dir)
    adapter_set = make_random_adapter_set(backbone, "verification", seed=0).eval()
    generator = torch.Generator().manual_seed(0)
    layers = backbone.num_layers + 1
    # two "speakers" whose cached frames differ by a constant offset in every layer
    rows, cache = [], {}
    for i in range(8):
        speaker = f"s{i % 2}"
        offset = 3.0 if speaker == "s1" else -3.0
        cache[f"c{i}"] = [torch.randn(12, backbone.hidden_size, generator=generator) + offset for _ in range(layers)]
        rows.append(SimpleNamespace(path=f"c{i}", speaker=speaker))
    speakers = ["s0", "s1"]
    prototypes = speaker_prototypes(adapter_set, cache, rows, speakers)
    assert prototypes.shape == (2, adapter_set.config.head.embedding_dim)
    torch.testing.assert_close(prototypes.norm(dim=-1), torch.ones(2))
    embeddings = head_outputs(adapter_set, [cache[r.path] for r in rows])
    targets = torch.tensor([speakers.index(r.speaker) for r in rows])
    random_init = AMSoftmaxLoss(adapter_set.config.head.embedding_dim, 2)
    warm = AMSoftmaxLoss(adapter_set.config.head.embedding_dim, 2)
    with torch.no_grad():
        warm.weight.copy_(prototypes)
        assert warm(embeddings, targets) < random_init(embeddings, targets)


def test_time_mask_silences_bounded_spans_and_leaves_the_input_alone():
    from training.dataset import SAMPLE_RATE, time_mask

    audio = np.ones(SAMPLE_RATE, dtype=np.float32)
    masked = time_mask(audio, np.random.default_rng(3), count=2, max_seconds=0.06)
    silenced = int((masked == 0).sum())
    assert 0 < silenced <= 2 * int(0.06 * SAMPLE_RATE) and audio.min() == 1.0
    assert np.array_equal(masked, time_mask(audio, np.random.default_rng(3), count=2, max_seconds=0.06))


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
            sf.write(root / path, _tone(150 + 30 * i, 0.6, rng), SR)
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
    from elp import MultiAdapterModel
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


def test_warmup_cosine_ramps_up_then_anneals_to_zero():
    from training.loop import warmup_cosine

    assert warmup_cosine(0, 10, 0.0) == pytest.approx(0.1)  # first warm-up step
    assert warmup_cosine(9, 10, 0.0) == pytest.approx(1.0)  # warm-up done, cosine at its top
    assert warmup_cosine(50, 10, 0.5) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 1.0) == pytest.approx(0.0)
    assert warmup_cosine(200, 10, 2.0) == pytest.approx(0.0)  # past the budget it stays at zero


def test_frame_masks_zero_the_same_spans_in_every_layer_and_leave_the_cache_alone():
    from training.feature_cache import mask_frames

    states = [torch.ones(50, 4), 2 * torch.ones(50, 4)]
    masked = mask_frames(states, torch.Generator().manual_seed(1), spans=2, max_frames=10)
    zeroed = [set(torch.nonzero((m == 0).all(dim=1)).flatten().tolist()) for m in masked]
    assert zeroed[0] == zeroed[1] and 0 < len(zeroed[0]) <= 20
    assert all(bool((s != 0).all()) for s in states)  # the cached tensors are not modified in place
    again = mask_frames(states, torch.Generator().manual_seed(1), spans=2, max_frames=10)
    assert all(torch.equal(a, b) for a, b in zip(masked, again, strict=True))


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
    from elp import MultiAdapterModel
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


def test_transplant_keeps_the_source_adapters_and_the_target_labels_with_a_fresh_head(backbone_dir):
    from elp import load_backbone as load
    from elp.testing import make_random_adapter_set
    from training.refit_start import transplant

    backbone = load(backbone_dir)
    asr, intent = (make_random_adapter_set(backbone, task, seed=seed) for task, seed in (("asr", 1), ("intent", 2)))
    moved = transplant(intent, asr)
    assert moved.task == "intent" and moved.config.labels == intent.config.labels
    assert moved.config.slot_names == intent.config.slot_names and moved.language_model is None
    source = asr.state_dict()
    for name, tensor in moved.state_dict().items():
        if name.startswith(("e_adapters.", "p_adapter.", "featurizer.")):
            assert torch.equal(tensor, source[name]), name
    assert moved.config.training["adapters_from"]["task"] == "asr"
    states = [torch.randn(1, 7, backbone.hidden_size) for _ in range(backbone.num_layers + 1)]
    logits = moved.head(moved.featurizer(states), torch.tensor([7]))
    assert logits.shape == (1, len(intent.config.labels))
    other = make_random_adapter_set(backbone, "asr", seed=1)
    other.config.backbone = dict(other.config.backbone, fingerprint="another backbone")
    with pytest.raises(ValueError, match="same backbone"):
        transplant(intent, other)


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


def test_condition_groups_follow_the_corpus_meta():
    from training.breakdown import condition_groups

    groups = condition_groups({"synth": "flite", "noise": "babble", "snr_db": 7.5, "reverb": True}, "spk-test-001")
    assert groups == ["all", "speaker=unseen", "synth=flite", "noise=babble", "snr<12dB", "reverb=True"]
    clean = condition_groups({"synth": "espeak", "noise": "none", "snr_db": None, "reverb": False}, "spk-train-004")
    assert clean[1] == "speaker=seen" and clean[4] == "snr>=12dB or clean"


@pytest.mark.slow
def test_breakdown_scores_every_group_against_the_same_predictions(asr_corpus, backbone_dir, tmp_path):
    from elp import MultiAdapterModel
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


@pytest.mark.slow
def test_pitch_fusion_fits_on_validation_and_writes_a_set_that_serves_the_fused_score(
        corpus, backbone_dir, tmp_path, capsys):
    import shutil

    from elp.testing import make_random_adapter_set
    from training import pitch_fusion
    from training.data.manifest import Trial, filter_split, read_manifest, write_trials

    # The fixture's "speakers" are tones at 90-210 Hz: pitch separates them, the random set does not.
    root = tmp_path / "corpus"
    shutil.copytree(corpus, root)
    rows = read_manifest(root / "verification.jsonl")
    for split in ("valid", "test"):
        clips = filter_split(rows, split)
        trials = [Trial(int(a.speaker == b.speaker), a.path, b.path)
                  for i, a in enumerate(clips) for b in clips[i + 1:]]
        write_trials(trials, root / f"verification_trials_{split}.txt")
    make_random_adapter_set(load_backbone(backbone_dir), "verification", seed=0).save(tmp_path / "speaker")
    pitch_fusion.main([str(tmp_path / "speaker"), "--out", str(tmp_path / "fused"), "--backbone", str(backbone_dir),
                       "--corpus", str(root), "--device", "cpu"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    grid = [line for line in lines if "valid_eer" in line]
    chosen = lines[-1]["chosen"]
    assert {g["weight"] for g in grid} >= {0.0, 0.5}
    assert chosen["valid_eer"] == min(g["valid_eer"] for g in grid)
    assert chosen["weight"] > 0 and chosen["valid_eer"] < next(g["valid_eer"] for g in grid if g["weight"] == 0)
    fused = AdapterSet.load(tmp_path / "fused")
    assert fused.config.head.pitch_weight == chosen["weight"] and fused.config.threshold is not None
    # the served (model) path gives the EER the grid computed from the same embeddings
    assert fused.config.metrics["valid"]["eer"] == pytest.approx(chosen["valid_eer"], abs=1e-6)
