"""End to end on a tiny real backbone: train -> save -> load -> evaluate, resume, comparison table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from tests.training.tones import SR, tone
from training import compare, evaluate, train


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
            sf.write(root / path, tone(classes[label] * rng.uniform(0.95, 1.05), rng.uniform(0.6, 1.0), rng), SR)
            emotion.append({"id": f"emo-{split}-{i}", "path": path, "duration_s": 1.0, "split": split,
                            "task": "emotion", "speaker": f"s{i % 3}", "text": None, "label": label, "meta": {}})
            speaker = f"{split}-spk{i % 4}"
            spk_path = f"audio/spk-{split}-{i}.wav"
            sf.write(root / spk_path, tone(90 + 40 * (i % 4), rng.uniform(0.6, 1.0), rng), SR)
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
    result = _train(corpus, backbone_dir, tmp_path, "emotion", "--max-steps", "9", "--keep-validated")
    assert result.steps == 9 and result.output
    adapter_set = AdapterSet.load(result.output)
    kept = sorted(p.name for p in (tmp_path / "run-emotion").glob("step-*"))
    assert kept == ["step-000003", "step-000006", "step-000009"]  # one set per validation, for averaging
    best = AdapterSet.load(tmp_path / "run-emotion" / f"step-{adapter_set.config.training['best_step']:06d}")
    assert all(torch.equal(best.state_dict()[k], v) for k, v in adapter_set.state_dict().items())
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
def test_a_run_from_a_set_with_frozen_parts_keeps_them_and_records_where_it_started(corpus, backbone_dir, tmp_path):
    start = _train(corpus, backbone_dir, tmp_path, "emotion", "--max-steps", "3")
    continued = train.train(train.build_parser().parse_args([
        "--task", "emotion", "--backbone", str(backbone_dir), "--corpus", str(corpus), "--init-from", start.output,
        "--train-only", "l,head", "--out", str(tmp_path / "continued"), "--run-dir", str(tmp_path / "run-continued"),
        "--batch-size", "4", "--num-workers", "0", "--eval-every", "2", "--max-steps", "4", "--lr-head", "5e-2",
        "--lr-l", "5e-2", "--quiet", "--device", "cpu"]))
    before, after = AdapterSet.load(start.output).state_dict(), AdapterSet.load(continued.output)
    frozen = [name for name in before if name.startswith(("e_adapters", "p_adapter"))]
    assert frozen and all(torch.equal(before[name], after.state_dict()[name]) for name in frozen)
    assert any(not torch.equal(before[name], tensor) for name, tensor in after.state_dict().items()
               if name.startswith("head"))  # the head did train
    assert after.config.training["init_from"] == start.output and after.config.training["train_only"] == "l,head"
    # the set kept at a validation says how this run made it, not how the set it started from was made
    kept = AdapterSet.load(tmp_path / "run-continued" / "best").config.training
    assert kept["init_from"] == start.output and kept["train_only"] == "l,head" and kept["steps"] in (2, 4)


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
    assert model.predict([torch.from_numpy(tone(330.0, 0.8, np.random.default_rng(5)))], ["emotion"])[0].label in (
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
