"""Prosody statistics: pitch, level and voicing measured right on signals with a known answer, one
clip's features independent of its batch, and a prosody-reading head that serves like any other."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from elp import AdapterSet, ConfigError, MultiAdapterModel
from elp.heads.pooled import RunningStandardizer
from elp.heads.prosody import NUM_PROSODY_FEATURES, PROSODY_FEATURES, clip_prosody, prosody_features
from elp.model import pad_waveforms
from elp.testing import make_random_adapter_set, seeded_waveform

SR = 16_000
F = {name: i for i, name in enumerate(PROSODY_FEATURES)}


def voiced_tone(f0_start: float, f0_end: float | None = None, seconds: float = 1.0, amplitude: float = 0.3,
                seed: int = 0) -> torch.Tensor:
    """Five harmonics on a (possibly gliding) pitch, with a little noise: a vowel-like signal."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = np.linspace(f0_start, f0_end or f0_start, t.size)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    wave = sum(np.sin(k * phase) / k for k in range(1, 6))
    wave = amplitude * (wave / np.abs(wave).max() + 0.01 * rng.standard_normal(t.size))
    return torch.from_numpy(wave.astype(np.float32))


@pytest.mark.parametrize("f0", [80.0, 120.0, 150.0, 220.0, 330.0])
def test_pitch_of_a_steady_voiced_tone_is_found_within_a_quarter_tone(f0):
    features = clip_prosody(voiced_tone(f0))
    assert features[F["f0_median_semitones"]] == pytest.approx(12 * math.log2(f0 / 100), abs=0.5)
    assert features[F["voiced_fraction"]] > 0.95
    assert features[F["f0_range_semitones"]] < 0.6


def test_a_glide_has_a_wider_pitch_range_than_a_steady_tone():
    glide = clip_prosody(voiced_tone(110.0, 220.0))  # one octave
    steady = clip_prosody(voiced_tone(150.0))
    assert glide[F["f0_range_semitones"]] == pytest.approx(12 * 0.8, abs=1.5)  # 10th to 90th percentile
    assert glide[F["f0_spread_semitones"]] > 5 * steady[F["f0_spread_semitones"]] + 1


def test_ten_times_louder_is_twenty_db_up_and_changes_nothing_else_that_is_relative():
    quiet, loud = clip_prosody(voiced_tone(140.0, amplitude=0.03)), clip_prosody(voiced_tone(140.0, amplitude=0.3))
    assert float(loud[F["level_mean_db"]] - quiet[F["level_mean_db"]]) == pytest.approx(20.0, abs=0.5)
    for name in ("f0_median_semitones", "tilt_mean_db", "voiced_fraction"):
        assert float(loud[F[name]]) == pytest.approx(float(quiet[F[name]]), abs=0.6), name


@pytest.mark.parametrize("samples", [0, 1, 400, 16_000])
def test_silence_and_tiny_clips_give_finite_features(samples):
    for wave in (torch.zeros(samples), torch.full((samples,), 0.5)):
        features = clip_prosody(wave)
        assert features.shape == (NUM_PROSODY_FEATURES,) and torch.isfinite(features).all()


def test_a_batch_gives_each_clip_the_features_it_has_alone():
    waves = [seeded_waveform(s, seed=i) for i, s in enumerate((1.2, 0.4, 2.1))]
    batch, lengths = pad_waveforms(waves)
    together = prosody_features(batch, lengths)
    for i, wave in enumerate(waves):
        torch.testing.assert_close(together[i], clip_prosody(wave))


def test_running_standardizer_starts_from_the_first_batch_trains_on_one_row_and_freezes_in_eval():
    norm = RunningStandardizer(3)
    first = torch.tensor([[1.0, 10.0, -5.0], [3.0, 30.0, -15.0]])
    out = norm(first)
    torch.testing.assert_close(out.mean(dim=0), torch.zeros(3), atol=1e-5, rtol=0)
    norm(torch.tensor([[2.0, 20.0, -10.0]]))  # a batch of one trains (batch norm would raise)
    norm.eval()
    before = norm.running_mean.clone()
    norm(torch.randn(4, 3) * 100)
    assert torch.equal(norm.running_mean, before)


@pytest.mark.parametrize("variant", ["whisper-postln", "wavlm-postln"])
def test_prosody_head_round_trips_serves_mixed_batches_and_answers_prosody(backbone, tmp_path):
    emotion = make_random_adapter_set(backbone, "emotion", seed=3, prosody=True)
    with torch.no_grad():  # running statistics the training set would have given
        emotion.head.prosody_norm.running_mean.copy_(torch.linspace(-20, 5, NUM_PROSODY_FEATURES))
        emotion.head.prosody_norm.batches_seen.fill_(50)
    emotion.save(tmp_path / "emotion")
    loaded = AdapterSet.load(tmp_path / "emotion")
    assert loaded.config.head.prosody
    assert torch.equal(loaded.head.prosody_norm.running_mean, emotion.head.prosody_norm.running_mean)

    model = MultiAdapterModel(backbone)
    model.add_adapter_set("emotion", loaded)
    model.add_adapter_set("asr", make_random_adapter_set(backbone, "asr", seed=1))
    waves = [seeded_waveform(1.0, seed=1), seeded_waveform(2.0, seed=2), seeded_waveform(0.7, seed=3)]
    mixed = model.predict(waves, ["emotion", "asr", "emotion"])
    for row in (0, 2):
        alone = model.predict([waves[row]], ["emotion"])[0]
        for label, score in alone.scores.items():
            assert mixed[row].scores[label] == pytest.approx(score, abs=1e-5)
    # The head hears pitch: the same clip an octave apart in pitch gets other scores.
    low, high = model.predict([voiced_tone(100.0), voiced_tone(200.0)], ["emotion", "emotion"])
    assert low.scores != pytest.approx(high.scores, abs=1e-4)


@pytest.mark.parametrize("variant", ["whisper-postln"])
def test_a_prosody_head_called_without_prosody_says_so(backbone):
    emotion = make_random_adapter_set(backbone, "emotion", prosody=True)
    with pytest.raises(ConfigError, match="prosody"):
        emotion.head(torch.randn(1, 5, emotion.featurizer.output_dim), torch.tensor([5]))


def test_append_pitch_keeps_unit_norm_and_fuses_the_cosines_by_weight():
    from elp.heads.pooled import append_pitch

    torch.manual_seed(0)
    voice = torch.nn.functional.normalize(torch.randn(2, 6), dim=-1)
    pitch_z = torch.tensor([-0.4, 1.1])
    fused = append_pitch(voice, pitch_z, weight=0.5, angle=0.75)
    assert fused.shape == (2, 8)
    torch.testing.assert_close(fused.norm(dim=-1), torch.ones(2))
    expected = (voice[0] @ voice[1] + 0.5 * math.cos(0.75 * 1.5)) / 1.5
    assert float(fused[0] @ fused[1]) == pytest.approx(float(expected), abs=1e-6)


@pytest.mark.parametrize("variant", ["whisper-postln"])
def test_speaker_head_with_pitch_scores_a_pitch_shift_lower_and_round_trips(backbone, tmp_path):
    speaker = make_random_adapter_set(backbone, "verification", seed=4)
    speaker.config.head.pitch_weight = 0.5
    fused = AdapterSet(speaker.config)  # the config now implies the standardiser's buffers
    state = speaker.state_dict() | {
        "head.prosody_norm.running_mean": torch.zeros(NUM_PROSODY_FEATURES),
        "head.prosody_norm.running_var": torch.full((NUM_PROSODY_FEATURES,), 36.0),  # 6 semitones
        "head.prosody_norm.batches_seen": torch.tensor(100),
    }
    fused.load_state_dict(state)
    fused.save(tmp_path / "speaker")
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("fused", AdapterSet.load(tmp_path / "speaker"))
    model.add_adapter_set("plain", make_random_adapter_set(backbone, "verification", seed=4))
    low, high = voiced_tone(110.0), voiced_tone(220.0)  # one octave: 12 semitones = 2 standard deviations
    plain_a, plain_b, fused_a, fused_b = model.predict([low, high, low, high], ["plain", "plain", "fused", "fused"])
    assert fused_a.embedding.shape == (plain_a.embedding.shape[0] + 2,)
    plain_cos = float(plain_a.embedding @ plain_b.embedding)
    dz = float(clip_prosody(high)[0] - clip_prosody(low)[0]) / 6.0  # ~2 (integer-lag pitch: 11.9 semitones)
    assert dz == pytest.approx(2.0, abs=0.05)
    expected = (plain_cos + 0.5 * math.cos(0.75 * dz)) / 1.5
    assert float(fused_a.embedding @ fused_b.embedding) == pytest.approx(expected, abs=1e-4)
    assert float(fused_a.embedding @ fused_b.embedding) < plain_cos
