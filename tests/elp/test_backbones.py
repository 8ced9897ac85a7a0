"""The step-by-step drive of each family reproduces transformers' own forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel, WhisperFeatureExtractor, WhisperModel

from elp import BackboneLoadError, MultiAdapterModel, load_backbone
from elp.testing import make_random_adapter_set, seeded_waveform

from .conftest import VARIANT_IDS


def _plain_last_hidden(backbone, wave: torch.Tensor) -> torch.Tensor:
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("plain", make_random_adapter_set(backbone, "emotion", method="none"))
    encoded = model.encode(wave[None], torch.tensor([wave.numel()]), ["plain"])
    return encoded.hidden_states[-1][0]


def test_backbone_is_frozen_in_eval_mode_without_layerdrop(backbone):
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.train()
    assert not backbone.training and not backbone.model.training
    assert backbone.identity.num_layers == 3 and backbone.identity.hidden_size == 32


@pytest.mark.parametrize("variant", [v for v in VARIANT_IDS if not v.startswith("whisper")])
def test_wav2vec2_family_matches_library_forward(backbone_dirs, variant):
    backbone = load_backbone(backbone_dirs[variant])
    wave = seeded_waveform(1.2, seed=3)
    reference = AutoModel.from_pretrained(backbone_dirs[variant]).eval()
    if backbone.normalize_waveform:
        wave_in = (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)
    else:
        wave_in = wave
    with torch.no_grad():
        expected = reference(wave_in[None]).last_hidden_state[0]
        ours = _plain_last_hidden(backbone, wave)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("variant", [v for v in VARIANT_IDS if v.endswith("postln") and not v.startswith("whisper")])
def test_group_norm_cnn_on_a_padded_batch_equals_each_clip_alone(backbone_dirs, variant):
    # post-LN ("base") configs put a GroupNorm over time in the first conv layer: padding in its
    # statistics would change every frame. (A batched CNN with masked statistics was measured 1.7-2x
    # slower than this per-clip loop on 2 CPU cores for 4 clips of 2-9 s, so the loop stays.)
    backbone = load_backbone(backbone_dirs[variant])
    assert backbone.cnn_needs_unpadded
    waves = [seeded_waveform(seconds, seed=seed) for seconds, seed in ((0.4, 1), (1.3, 2), (0.9, 3))]
    lengths = torch.tensor([w.numel() for w in waves])
    padded = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    with torch.no_grad():
        frames, frame_lengths = backbone.front_end(padded, lengths)
        for row, wave in enumerate(waves):
            alone, alone_lengths = backbone.front_end(wave[None], lengths[row : row + 1])
            assert int(frame_lengths[row]) == int(alone_lengths[0])
            torch.testing.assert_close(frames[row, : alone.shape[1]], alone[0], atol=1e-5, rtol=1e-5)
            assert not frames[row, alone.shape[1] :].any()  # padding frames stay zero


def test_whisper_log_mel_matches_feature_extractor(backbone_dirs):
    backbone = load_backbone(backbone_dirs["whisper-postln"])
    wave = seeded_waveform(2.0, seed=4)
    extractor = WhisperFeatureExtractor(feature_size=80)
    expected = extractor(wave.numpy(), sampling_rate=16000, return_tensors="pt").input_features[0]
    ours = backbone.log_mel(wave)
    frames = wave.numel() // 160
    assert ours.shape == (80, frames)
    torch.testing.assert_close(ours, expected[:, :frames], atol=2e-4, rtol=1e-4)


def test_whisper_full_window_matches_library_encoder(backbone_dirs):
    """On a full 30 s clip (no slicing, no padding) the sliced-table drive equals WhisperEncoder."""
    backbone = load_backbone(backbone_dirs["whisper-postln"])
    wave = seeded_waveform(30.0, seed=5)
    encoder = WhisperModel.from_pretrained(backbone_dirs["whisper-postln"]).get_encoder().eval()
    with torch.no_grad():
        mel = backbone.log_mel(wave)[None]
        expected = encoder(mel).last_hidden_state[0]
        ours = _plain_last_hidden(backbone, wave)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


def test_whisper_takes_variable_length_without_30s_padding(backbone_dirs):
    backbone = load_backbone(backbone_dirs["whisper-postln"])
    for seconds, frames in ((1.0, 50), (4.0, 200), (2.53, 127)):
        wave = seeded_waveform(seconds)
        with torch.no_grad():
            hidden = _plain_last_hidden(backbone, wave)
        assert hidden.shape[0] == frames == backbone.frame_count(wave.numel())


def test_unsupported_or_missing_backbone_is_a_typed_error(tmp_path):
    with pytest.raises(BackboneLoadError):
        load_backbone(tmp_path / "nothing-here")
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(BackboneLoadError, match="unsupported backbone type"):
        load_backbone(tmp_path)


def test_fingerprint_depends_on_weights_not_on_path(backbone_dirs, tmp_path):
    import shutil

    source = backbone_dirs["wavlm-postln"]
    copy = shutil.copytree(source, tmp_path / "copy")
    assert load_backbone(source).identity.fingerprint == load_backbone(copy).identity.fingerprint
    from elp.testing import save_tiny_backbone

    other = save_tiny_backbone(tmp_path / "other", "wavlm", seed=1)
    assert load_backbone(other).identity.fingerprint != load_backbone(source).identity.fingerprint


def test_fp16_cast_keeps_the_fingerprint(backbone_dirs):
    a = load_backbone(backbone_dirs["whisper-postln"])
    b = load_backbone(backbone_dirs["whisper-postln"], dtype=torch.float16)
    assert a.identity == b.identity
    assert np.dtype("float16") == np.dtype(str(b.dtype).replace("torch.", ""))
