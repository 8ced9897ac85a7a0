"""The voice branch of speaker heads (elp.heads.voice): its log-mel front end, row independence, the
fused cosine, and a set with a branch saved, loaded and served in a mixed batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from elp import AdapterSet, MultiAdapterModel
from elp.heads.voice import HOP, MEL_BANDS, MIN_FRAMES, WINDOW, LogMel, VoiceBranch, VoiceBranchConfig, mel_filterbank
from elp.testing import make_random_adapter_set

SMALL = VoiceBranchConfig(channels=16, pooled_channels=24, embedding_dim=12)


def tone(hz: float, seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    t = torch.arange(int(16000 * seconds)) / 16000
    noise = torch.randn(t.shape, generator=torch.Generator().manual_seed(seed)) * 0.01
    return (0.3 * torch.sin(2 * math.pi * hz * t) + noise).float()


def test_filterbank_triangles_cover_the_band_once():
    filters = mel_filterbank()
    assert filters.shape == (MEL_BANDS, WINDOW // 2 + 1)
    peaks = filters.argmax(dim=1)
    assert torch.all(peaks[1:] > peaks[:-1])  # centres rise with the band index
    assert float(filters.max()) <= 1.0 + 1e-6
    covered = filters[:, 2:-2].sum(dim=0)  # between the first and last centre the triangles sum to ~1
    inside = (torch.arange(filters.shape[1])[2:-2] > peaks[0]) & (torch.arange(filters.shape[1])[2:-2] < peaks[-1])
    assert torch.allclose(covered[inside], torch.ones_like(covered[inside]), atol=0.02)


def test_log_mel_ignores_gain_and_puts_a_tone_in_its_band():
    log_mel = LogMel()
    quiet, loud = log_mel(tone(1000.0)), log_mel(tone(1000.0) * 8)
    assert quiet.shape == (MEL_BANDS, 1 + (16000 - WINDOW) // HOP)
    assert torch.allclose(quiet, loud, atol=0.05)  # the per-clip mean removes a constant gain
    def loudest_band(hz: float) -> int:  # the tone for half the clip, then quiet noise: its band moves most
        clip = torch.cat([tone(hz, 0.5), tone(hz, 0.5, seed=9) * 0.0 + torch.randn(8000) * 1e-3])
        return int(log_mel(clip).max(dim=1).values.argmax())

    assert loudest_band(300.0) < loudest_band(1000.0) < loudest_band(3000.0)
    assert log_mel(torch.zeros(10)).shape[1] == MIN_FRAMES  # a tiny clip still gets frames


def test_rows_do_not_depend_on_batch_mates_or_padding():
    torch.manual_seed(0)
    branch = VoiceBranch(SMALL).eval()
    short, long = tone(220.0, 0.7, seed=1), tone(150.0, 2.3, seed=2)
    padded = torch.zeros(2, long.numel())
    padded[0, : short.numel()], padded[1] = short, long
    with torch.no_grad():
        together = branch(padded, torch.tensor([short.numel(), long.numel()]))
        alone = branch(short.unsqueeze(0), torch.tensor([short.numel()]))
    assert torch.allclose(together[0], alone[0], atol=1e-6)
    assert torch.allclose(together.norm(dim=1), torch.ones(2), atol=1e-5)


def test_branch_runs_in_bfloat16_close_to_float32():
    torch.manual_seed(0)
    branch = VoiceBranch(SMALL).eval()
    wave = tone(200.0, 1.0, seed=4).unsqueeze(0)
    with torch.no_grad():
        full = branch(wave, torch.tensor([wave.shape[1]]))
        half = branch.to(torch.bfloat16)(wave, torch.tensor([wave.shape[1]]))
    assert half.dtype == torch.bfloat16
    assert float(torch.nn.functional.cosine_similarity(full, half.float())) > 0.98


@pytest.mark.parametrize("variant", ["whisper-postln"])
def test_set_with_a_voice_branch_fuses_the_cosines_and_round_trips(backbone, tmp_path):
    plain = make_random_adapter_set(backbone, "verification", seed=4)
    config = plain.config
    config.head.voice_weight = 0.25
    config.head.voice_channels, config.head.voice_pooled_channels, config.head.voice_embedding_dim = 16, 24, 12
    fused = AdapterSet(config)
    torch.manual_seed(1)
    branch = VoiceBranch(SMALL)
    fused.load_state_dict(plain.state_dict() | {f"head.voice.{k}": v for k, v in branch.state_dict().items()})
    fused.save(tmp_path / "speaker")
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("fused", AdapterSet.load(tmp_path / "speaker"))
    model.add_adapter_set("plain", make_random_adapter_set(backbone, "verification", seed=4))
    a, b = tone(180.0, 1.2, seed=3), tone(240.0, 0.8, seed=5)
    outputs = model.predict([a, b, a, b], ["plain", "fused", "fused", "plain"])
    fused_a, fused_b = outputs[2].embedding, outputs[1].embedding
    assert fused_a.shape == (16 + 12,)
    with torch.no_grad():
        voice_a, voice_b = (branch.eval()(x.unsqueeze(0), torch.tensor([x.numel()]))[0] for x in (a, b))
    encoder_cos = float(outputs[0].embedding @ outputs[3].embedding)
    expected = 0.75 * encoder_cos + 0.25 * float(voice_a @ voice_b)
    assert float(fused_a @ fused_b) == pytest.approx(expected, abs=1e-4)
    alone = model.predict([b], ["fused"])[0].embedding  # a mixed batch answers as a batch of one
    assert np.allclose(np.asarray(alone), np.asarray(fused_b), atol=1e-5)


def test_speaker_head_without_waves_refuses_to_guess():
    from elp.errors import ConfigError
    from elp.heads.config import HeadConfig
    from elp.heads.pooled import SpeakerEmbeddingHead

    head = SpeakerEmbeddingHead(8, HeadConfig(hidden_dim=8, embedding_dim=8, voice_weight=1.0, voice_channels=8,
                                              voice_pooled_channels=8, voice_embedding_dim=8))
    with pytest.raises(ConfigError, match="voice branch"):
        head(torch.zeros(1, 5, 8), torch.tensor([5]))
