"""Speaker distillation on the tiny Whisper fixture: the cache, the loss, the trainer and the saved set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.testing import save_tiny_backbone, seeded_waveform
from training import distill
from training.dataset import mu_law
from training.distill_cache import cache_shard, plain_encoder, refuse_held_out, save_shard
from training.distill_views import make_view

DIM = 16


def fake_teacher(audio: np.ndarray) -> np.ndarray:
    """A fixed function of the clip's average spectrum: stands in for resemblyzer."""
    frames = audio[: audio.size // 400 * 400].reshape(-1, 400)
    spectrum = np.log1p(np.abs(np.fft.rfft(frames, axis=1)).mean(axis=0))[:64]
    projection = np.random.default_rng(123).standard_normal((64, DIM))
    vector = (spectrum - spectrum.mean()) @ projection
    return (vector / np.linalg.norm(vector)).astype(np.float32)


@pytest.fixture(scope="module")
def cached(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    """(backbone, feature folder, teacher folder, trial list) for 12 seeded clips, two views each."""
    root = tmp_path_factory.mktemp("distill")
    backbone = save_tiny_backbone(root / "whisper", family="whisper")
    paths = []
    for seed in range(12):
        path = root / f"clip-{seed:02d}.wav"
        sf.write(path, seeded_waveform(1.5 + 0.1 * seed, seed=seed).numpy(), 16000)
        paths.append(str(path))
    model = plain_encoder(str(backbone))
    tensors, teacher_tensors, keys, recipes = cache_shard(model, fake_teacher, paths, 2, [1, 2, 3], seed=0,
                                                          max_seconds=6.0)
    metadata = {"keys": json.dumps(keys), "layers": "[1, 2, 3]", "recipes": json.dumps(recipes)}
    save_shard(root / "features", 0, tensors, metadata)
    save_shard(root / "teacher", 0, teacher_tensors, metadata)
    # made-up "speakers" by seed parity: enough for the trainer to compute an EER
    trials = [f"{int(a % 2 == b % 2)} {paths[a]} {paths[b]}" for a in range(6) for b in range(a + 1, 6)]
    (root / "trials.txt").write_text("\n".join(trials) + "\n")
    return backbone, root / "features", root / "teacher", root / "trials.txt"


def test_views_degrade_the_student_side_only():
    audio = seeded_waveform(1.0, seed=3).numpy()
    clean = make_view(audio, 0, np.random.default_rng(0))
    assert clean.student is audio and clean.teacher is audio
    degraded = [make_view(audio, 1, np.random.default_rng(seed)) for seed in range(8)]
    assert all(not np.array_equal(v.student, v.teacher) for v in degraded)
    assert any("speed" in v.recipe and v.teacher.size != audio.size for v in degraded)
    assert np.abs(mu_law(audio) - audio).max() < 0.05


def test_held_out_audio_is_refused():
    with pytest.raises(SystemExit):
        refuse_held_out(["data/corpus/audio/train/a.flac", "data/human/audio/june-01.flac"])


@pytest.mark.slow  # trains a student (66 s on 2 shared cores)
def test_distillation_improves_agreement_with_the_teacher(cached):
    backbone, features_dir, teacher_dir, _ = cached
    features, teacher, _, layers = distill.load_features(features_dir, teacher_dir)
    assert layers == [1, 2, 3] and len(features) == 24
    torch.manual_seed(0)
    student = distill.build_student(str(backbone), layers, l_dim=16, pooling="stats", embedding_dim=DIM, dropout=0.0)
    keys = sorted(features)

    def agreement() -> float:
        student.eval()
        with torch.no_grad():
            out = distill.embed(student, [features[k] for k in keys])
        return float((out * torch.stack([teacher[k] for k in keys])).sum(-1).mean())

    before = agreement()
    args = type("Args", (), {"crop_frames": 40, "structure_weight": 1.0})()
    optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batches = [keys[:12], keys[12:]]
    losses = [distill.train_epoch(student, batches, features, teacher, optimizer, scheduler, args,
                                  torch.Generator().manual_seed(0)) for _ in range(40)]
    after = agreement()
    assert losses[-1] < losses[0]
    assert after > before + 0.15 and after > 0.85, (before, after)


def test_trainer_writes_a_set_that_serves_verification(cached, tmp_path):
    backbone, features_dir, teacher_dir, trials = cached
    out = tmp_path / "verify-distill"
    distill.main(["--train", str(features_dir), "--teacher", str(teacher_dir), "--eval",
                  f"valid={features_dir}:{trials}", "--out", str(out), "--backbone", str(backbone),
                  "--epochs", "3", "--batch-size", "8", "--l-dim", "16", "--embedding-dim", str(DIM)])
    adapter_set = AdapterSet.load(out)  # strict: every tensor present, none extra
    assert adapter_set.task == "verification" and adapter_set.config.threshold is not None
    assert adapter_set.config.training["selected_by"] == "valid EER"
    model = MultiAdapterModel(load_backbone(str(backbone)))
    model.add_adapter_set("verify", adapter_set)
    waves = [seeded_waveform(1.5, seed=0), seeded_waveform(1.7, seed=2), seeded_waveform(1.6, seed=1)]
    served = [p.embedding for p in model.predict(waves, ["verify"] * 3)]
    assert all(e.shape == (DIM,) and abs(float(e.norm()) - 1) < 1e-4 for e in served)
    features = distill.load_features(features_dir)[0]
    first = str(Path(trials).parent / "clip-00.wav") + "#0"
    with torch.no_grad():
        from_cache = distill.embed(adapter_set.eval(), [features[first]])[0]
    # the served pass equals the cached training pass (up to the cache's fp16)
    assert float(served[0] @ from_cache) > 0.99


def test_threshold_rule_caps_false_accepts_and_falls_back_to_the_eer_point():
    from training.verify_calibrate import choose_threshold, error_rates

    rng = np.random.default_rng(0)
    labels = np.array([1] * 200 + [0] * 200)
    separated = np.concatenate([rng.normal(0.8, 0.05, 200), rng.normal(0.3, 0.1, 200)])
    chosen = choose_threshold(separated, labels, max_far=0.02, max_frr=0.05)
    assert chosen["far"] <= 0.02 and chosen["frr"] <= 0.05 and "FAR" in chosen["rule"]
    assert error_rates(separated, labels, chosen["threshold"])["far"] == chosen["far"]
    overlapping = np.concatenate([rng.normal(0.5, 0.1, 200), rng.normal(0.45, 0.1, 200)])
    fallback = choose_threshold(overlapping, labels, max_far=0.02, max_frr=0.05)
    assert fallback["rule"].startswith("EER") and abs(fallback["far"] - fallback["frr"]) < 0.05


def test_speaker_labels_feed_am_softmax_from_teacher_prototypes(cached, tmp_path):
    """Speaker classes come from manifests (a speed-perturbed view is another speaker), the AM-softmax
    weights start at each class's mean teacher embedding, and a training step with both terms runs."""
    backbone, features_dir, teacher_dir, _ = cached
    features, teacher, recipes, layers = distill.load_features(features_dir, teacher_dir)
    keys = sorted(features)
    rows = [{"id": Path(k.rsplit("#", 1)[0]).stem, "path": Path(k.rsplit("#", 1)[0]).name, "duration_s": 1.5,
             "split": "train", "task": "verification", "speaker": f"spk{int(Path(k.rsplit('#', 1)[0]).stem[-2:]) % 3}",
             "text": None, "label": None, "meta": {}} for k in keys if k.endswith("#0")]
    manifest = Path(keys[0].rsplit("#", 1)[0]).parent / "verification.jsonl"
    unlabelled = rows.pop()  # a clip in no manifest (an unlabelled real voice): distillation term only
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    classes = distill.speaker_classes(keys, recipes, [str(manifest)])
    assert not [k for k in classes if Path(k.rsplit("#", 1)[0]).name == unlabelled["path"]]
    assert len(classes) < len(keys)
    speeds = {k for k in keys if "speed" in recipes[k] and k in classes}
    assert len(set(classes.values())) >= 3 + (1 if speeds else 0)
    assert all(classes[k] != classes[k.replace("#1", "#0")] for k in speeds)
    prototypes = distill.teacher_prototypes(teacher, classes)
    first = keys[0]
    assert float(prototypes[classes[first]] @ teacher[first]) > 0.3
    torch.manual_seed(0)
    student = distill.build_student(str(backbone), layers, l_dim=16, pooling="stats", embedding_dim=DIM, dropout=0.0)
    aam = distill.AMSoftmaxLoss(DIM, prototypes.shape[0])
    aam.weight.data = prototypes
    args = type("Args", (), {"crop_frames": 40, "structure_weight": 1.0, "aam_weight": 0.1})()
    optimizer = torch.optim.AdamW([*student.parameters(), *aam.parameters()], lr=3e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    losses = [distill.train_epoch(student, [keys], features, teacher, optimizer, scheduler, args,
                                  torch.Generator().manual_seed(0), aam, classes) for _ in range(8)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
