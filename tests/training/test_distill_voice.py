"""Voice-branch distillation and fusion on seeded clips: the cache, the trainer, the fused set served."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.heads.voice import MEL_BANDS
from elp.testing import make_random_adapter_set, save_tiny_backbone, seeded_waveform
from tests.training.test_distill import fake_teacher
from training import distill_voice, voice_fusion


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> tuple[Path, list[str], Path]:
    """(root, 12 seeded clips, a trial list pairing them by seed parity)."""
    root = tmp_path_factory.mktemp("voice")
    paths = []
    for seed in range(12):
        path = root / f"clip-{seed:02d}.wav"
        sf.write(path, seeded_waveform(1.2 + 0.1 * seed, seed=seed).numpy(), 16000)
        paths.append(str(path))
    trials = [f"{int(a % 2 == b % 2)} {paths[a]} {paths[b]}" for a in range(6) for b in range(a + 1, 6)]
    (root / "trials.txt").write_text("\n".join(trials) + "\n")
    return root, paths, root / "trials.txt"


@pytest.fixture(scope="module")
def cache_dir(clips) -> Path:
    root, paths, _ = clips
    out = root / "cache"
    assert distill_voice.cache_views(paths, fake_teacher, out, views=2, shard_size=5, part=(0, 2)) == 12
    assert distill_voice.cache_views(paths, fake_teacher, out, views=2, shard_size=5, part=(1, 2)) == 12
    assert distill_voice.cache_views(paths, fake_teacher, out, views=2, shard_size=5, part=(0, 2)) == 0  # resumed
    return out


def test_cache_holds_every_view_with_the_teachers_vector(cache_dir, clips):
    mels, teacher, keys = distill_voice.load_cache([str(cache_dir)])
    assert len(keys) == len(set(keys)) == 24 and len(mels) == 24
    assert {k.rsplit("#", 1)[1] for k in keys} == {"0", "1"}
    assert all(m.dtype == torch.float16 and m.shape[0] == MEL_BANDS for m in mels)
    clean = keys.index(f"{clips[1][3]}#0")
    expected = fake_teacher(sf.read(clips[1][3], dtype="float32")[0])
    assert np.allclose(teacher[clean].numpy(), expected, atol=1e-6)  # view 0: the teacher heard the clip itself


def test_held_out_audio_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="held-out"):
        distill_voice.cache_views(["data/human/audio/x.flac"], fake_teacher, tmp_path, views=1)


def test_training_moves_the_branch_towards_the_teacher_and_saves_it(cache_dir, clips, tmp_path):
    _, _, trials = clips
    mels, teacher, _ = distill_voice.load_cache([str(cache_dir)])
    out = tmp_path / "branch"
    args = ["train", "--cache", str(cache_dir), "--eval", f"valid={trials}", "--out", str(out), "--epochs", "6",
            "--batch-size", "8", "--min-frames", "60", "--max-frames", "100", "--channels", "16",
            "--pooled-channels", "24", "--threads", "1", "--lr", "5e-3"]

    def agreement(branch) -> float:
        targets = torch.stack(list(distill_voice.center(dict(enumerate(teacher))).values()))
        with torch.no_grad():
            out = torch.cat([branch.eval().embed_mels(m.float().unsqueeze(0)) for m in mels])
        return float((out * targets).sum(-1).mean())

    distill_voice.main([*args[:-6], "--epochs", "1", *args[-4:], "--lr", "1e-9", "--out", str(tmp_path / "start")])
    distill_voice.main(args)
    record = json.loads((out / "voice_branch.json").read_text())
    assert record["config"]["channels"] == 16 and "valid" in record["eer"]
    assert agreement(voice_fusion.load_branch(out)) > agreement(voice_fusion.load_branch(tmp_path / "start")) + 0.05


def fusion_case(root: Path, tmp_path: Path, name: str) -> tuple[Path, object]:
    """A tiny Whisper backbone, a random speaker set (``tmp_path/speaker``) and a small distilled-shape branch
    (``tmp_path/branch``): what the fusion tests start from."""
    backbone_dir = save_tiny_backbone(root / name, family="whisper")
    backbone = load_backbone(str(backbone_dir))
    make_random_adapter_set(backbone, "verification", seed=3).save(tmp_path / "speaker")
    torch.manual_seed(0)
    branch = distill_voice.VoiceBranch(distill_voice.VoiceBranchConfig(channels=8, pooled_channels=8, embedding_dim=8))
    distill_voice.save_branch(branch, tmp_path / "branch", {"epoch": 1})
    return backbone_dir, backbone


def test_fusion_writes_a_set_that_serves_the_chosen_mix(clips, tmp_path):
    root, paths, trials = clips
    backbone_dir, backbone = fusion_case(root, tmp_path, "whisper")
    voice_fusion.main([str(tmp_path / "speaker"), "--branch", str(tmp_path / "branch"), "--valid", f"v={trials}",
                       "--weights", "0", "0.5", "1", "--out", str(tmp_path / "fused"), "--backbone", str(backbone_dir),
                       "--report", str(tmp_path / "grid.json")])
    fused = AdapterSet.load(tmp_path / "fused")  # strict: every tensor present, none extra
    chosen = json.loads((tmp_path / "grid.json").read_text())["chosen"]
    assert fused.config.head.voice_weight == chosen["voice_weight"]
    assert len(fused.config.training["voice_fusion"]["grid"]) == 3
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("fused", fused)
    a, b = (torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in paths[:2])
    served_a, served_b = (p.embedding for p in model.predict([a, b], ["fused", "fused"]))
    row = next(r for r in json.loads((tmp_path / "grid.json").read_text())["grid"]
               if r["voice_weight"] == chosen["voice_weight"])
    assert row["v_eer"] == chosen["v_eer"]
    assert abs(float(served_a.norm()) - 1) < 1e-5 and abs(float(served_b.norm()) - 1) < 1e-5


def test_telephone_share_sets_how_many_degraded_views_are_narrowband():
    from training.distill_views import make_view

    audio = seeded_waveform(1.0, seed=7).numpy()
    recipes = [make_view(audio, view, np.random.default_rng(view), telephone_share=1.0).recipe for view in range(1, 9)]
    assert all("telephone" in r for r in recipes)
    recipes = [make_view(audio, view, np.random.default_rng(view), telephone_share=0.0).recipe for view in range(1, 9)]
    assert not any("telephone" in r for r in recipes) and all("noise" in r for r in recipes)


def test_crop_masks_stay_inside_their_limits():
    mels = [torch.randn(MEL_BANDS, 80).half() + 5, torch.randn(MEL_BANDS, 30).half() + 5]
    rng = np.random.default_rng(0)
    for _ in range(20):
        batch = distill_voice.crop_batch(mels, [0, 1], 50, rng, mask_bands=6, mask_frames=10)
        assert batch.shape == (2, MEL_BANDS, 50)
        for crop in batch:
            zero_bands = int((crop == 0).all(dim=1).sum())
            zero_frames = int((crop == 0).all(dim=0).sum())
            assert zero_bands <= 6 and zero_frames <= 10


def test_teacher_shards_are_read_back_by_the_realvox_tools(clips, tmp_path):
    from training.teacher import write_teacher_shards
    from training.verify_calibrate import teacher_vectors

    _, paths, _ = clips
    assert write_teacher_shards(paths[:5], fake_teacher, tmp_path / "t", shard_size=2) == 5
    assert write_teacher_shards(paths[:5], fake_teacher, tmp_path / "t", shard_size=2) == 0  # resumed
    vectors = teacher_vectors(str(tmp_path / "t"))
    assert sorted(vectors) == sorted(f"{p}#0" for p in paths[:5])
    expected = fake_teacher(sf.read(paths[2], dtype="float32")[0])
    assert np.allclose(vectors[f"{paths[2]}#0"].numpy(), expected / np.linalg.norm(expected), atol=1e-6)


def test_fusion_guard_keeps_weights_whose_guard_trials_stay_under_the_cap(clips, tmp_path):
    """``--guard`` lists are scored at every weight but not pooled; a weight over the cap is never chosen."""
    root, _, trials = clips
    backbone_dir, _ = fusion_case(root, tmp_path, "whisper-guard")
    common = [str(tmp_path / "speaker"), "--branch", str(tmp_path / "branch"), "--valid", f"v={trials}",
              "--weights", "0", "0.5", "1", "--backbone", str(backbone_dir), "--guard", f"g={trials}"]
    voice_fusion.main([*common, "--out", str(tmp_path / "open"), "--report", str(tmp_path / "open.json")])
    grid = json.loads((tmp_path / "open.json").read_text())["grid"]
    assert all(row["g_eer"] == row["v_eer"] for row in grid)  # scored, but not pooled into the choice's list
    cap = min(row["g_eer"] for row in grid)
    voice_fusion.main([*common, "--guard-max-eer", str(cap), "--out", str(tmp_path / "capped"),
                       "--report", str(tmp_path / "capped.json")])
    assert json.loads((tmp_path / "capped.json").read_text())["chosen"]["g_eer"] <= cap
    with pytest.raises(SystemExit, match="no weight keeps"):
        voice_fusion.main([*common, "--guard-max-eer", str(cap - 0.01), "--out", str(tmp_path / "none")])


def test_second_branch_joins_beside_the_first_and_keeps_its_ratio(clips, tmp_path):
    """``--second``: the set's own encoder/branch mix is kept, the new branch's weight is chosen on the grid, and
    the written set serves ``(1 - v2) * own mix + v2 * cos_second``."""
    from elp.convert.dvector_branch import write_branch
    from elp.heads.dvector import DvectorBranch, DvectorConfig

    root, paths, trials = clips
    backbone_dir, backbone = fusion_case(root, tmp_path, "whisper-second")
    common = ["--valid", f"v={trials}", "--backbone", str(backbone_dir)]
    voice_fusion.main([str(tmp_path / "speaker"), "--branch", str(tmp_path / "branch"), "--weights", "0.5",
                       "--out", str(tmp_path / "one"), *common])
    second = DvectorBranch(DvectorConfig(hidden=8, layers=1, embedding_dim=6)).eval()
    write_branch(second, tmp_path / "second", Path(paths[0]))
    with pytest.raises(SystemExit, match="one voice branch"):
        voice_fusion.main([str(tmp_path / "speaker"), "--second", "--branch", str(tmp_path / "second"),
                           "--out", str(tmp_path / "x"), *common])
    voice_fusion.main([str(tmp_path / "one"), "--second", "--branch", str(tmp_path / "second"), "--weights", "0.3",
                       "--out", str(tmp_path / "two"), "--report", str(tmp_path / "two.json"), *common])
    two = AdapterSet.load(tmp_path / "two")
    head = two.config.head
    assert (head.voice_weight, head.second_voice_weight, head.second_voice_kind) == (0.35, 0.3, "dvector")
    assert "second_voice_fusion" in two.config.training
    encoder_only = voice_fusion.encoder_part(two)  # a set with two branches strips to its encoder part
    assert not hasattr(encoder_only.head, "second_voice") and encoder_only.config.head.second_voice_weight == 0
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("one", AdapterSet.load(tmp_path / "one"))
    model.add_adapter_set("two", two)
    a, b = (torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in paths[:2])
    one_a, one_b, two_a, two_b = (p.embedding for p in model.predict([a, b, a, b], ["one", "one", "two", "two"]))
    with torch.no_grad():
        second_a, second_b = (second(x.unsqueeze(0), torch.tensor([x.numel()]))[0] for x in (a, b))
    expected = 0.7 * float(one_a @ one_b) + 0.3 * float(second_a @ second_b)
    assert float(two_a @ two_b) == pytest.approx(expected, abs=1e-4)
    assert json.loads((tmp_path / "two.json").read_text())["chosen"]["voice_weight"] == 0.3


def test_fusion_from_a_centred_set_scores_its_encoder_part_uncentred_and_writes_it_uncentred(clips, tmp_path):
    """A branch replacing a centred set's branch (CAM++ for GE2E in the twentieth session): the centre was the mean
    of the embedding being replaced, so the grid is the uncentred set's and the fitted set comes out uncentred."""
    root, _, trials = clips
    backbone_dir, _ = fusion_case(root, tmp_path, "whisper-centred")
    common = ["--branch", str(tmp_path / "branch"), "--valid", f"v={trials}", "--weights", "0", "0.5",
              "--backbone", str(backbone_dir)]
    voice_fusion.main([str(tmp_path / "speaker"), *common, "--out", str(tmp_path / "one"),
                       "--report", str(tmp_path / "one.json")])
    one = AdapterSet.load(tmp_path / "one")
    config = copy.deepcopy(one.config)
    config.head.centred = True
    centred = AdapterSet(config)
    centre = torch.full_like(centred.state_dict()["head.centre"], 0.1)
    centred.load_state_dict(one.state_dict() | {"head.centre": centre})
    centred.save(tmp_path / "centred")
    voice_fusion.main([str(tmp_path / "centred"), *common, "--out", str(tmp_path / "refit"),
                       "--report", str(tmp_path / "refit.json")])
    refit = AdapterSet.load(tmp_path / "refit")  # strict: no centre tensor left behind
    assert not refit.config.head.centred and "head.centre" not in refit.state_dict()
    grids = [json.loads((tmp_path / name).read_text())["grid"] for name in ("one.json", "refit.json")]
    assert grids[0] == grids[1]
