"""int8 for the wav2vec 2.0 family: WavLM's attention rewritten so its projections are Linear calls
(same function in float), and the CNN feature encoder's C -> C convolutions as windows x int8 Linear."""

from __future__ import annotations

import pytest
import torch
from transformers import WavLMConfig, WavLMModel

from elp import load_backbone
from elp.backbones.calibration import linear_input_maxima
from elp.backbones.quantize import Int8Conv1d, quantized_conv_count, quantized_linear_count
from elp.backbones.wavlm_attention import ProjectedWavLMAttention
from elp.model import pad_waveforms
from elp.testing import seeded_waveform, tiny_config
from tests.elp.int8_support import VNNI

WAVES = [seeded_waveform(seconds, seed=20 + seed) for seed, seconds in enumerate((1.0, 1.6, 0.7))]


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm().clamp_min(1e-6))


def _padded(waves: list[torch.Tensor], garbage: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch whose padding holds ``garbage`` (a front end must never read it)."""
    batch, lengths = pad_waveforms(waves)
    past_end = torch.arange(batch.shape[1])[None, :] >= lengths[:, None]
    return batch.masked_fill(past_end, garbage), lengths


@pytest.mark.parametrize("stable_layer_norm", [False, True])
def test_projected_wavlm_attention_equals_the_library_in_float(stable_layer_norm):
    torch.manual_seed(0)
    model = WavLMModel(tiny_config("wavlm", stable_layer_norm)).eval()
    for layer in model.encoder.layers:  # a gate that is not its initial constant: every term counts
        torch.nn.init.normal_(layer.attention.gru_rel_pos_const, 1.0, 0.5)
    batch, lengths = _padded(WAVES)
    mask = (torch.arange(batch.shape[1])[None, :] < lengths[:, None]).long()
    names = set(model.state_dict())
    with torch.no_grad():
        want = model(batch, attention_mask=mask, output_hidden_states=True).hidden_states
        originals = [layer.attention for layer in model.encoder.layers]
        for layer in model.encoder.layers:
            layer.attention = ProjectedWavLMAttention.adopt(layer.attention)
        got = model(batch, attention_mask=mask, output_hidden_states=True).hidden_states
    # the same parameter objects under the same names: fingerprints and calibration labels unchanged
    assert set(model.state_dict()) == names
    assert all(new.q_proj.weight is old.q_proj.weight for new, old in
               zip((layer.attention for layer in model.encoder.layers), originals, strict=True))
    assert len(got) == len(want) == len(model.encoder.layers) + 1
    for index, (mine, library) in enumerate(zip(got, want, strict=True)):  # padded frames included
        assert torch.allclose(mine, library, atol=2e-5, rtol=1e-5), index


@pytest.mark.parametrize("variant", ["wavlm-postln", "wavlm-preln"])
def test_int8_wavlm_runs_its_attention_projections_and_cnn_in_int8(backbone_dirs, variant):
    float_backbone = load_backbone(backbone_dirs[variant])
    rewritten = load_backbone(backbone_dirs[variant])
    rewritten.prepare_for_int8()  # the rewrite alone, still float: the backbone's answers do not move
    batch, lengths = _padded(WAVES)
    last = {}
    with torch.no_grad():
        frames, frame_lengths = float_backbone.front_end(batch, lengths)
        valid = torch.arange(frames.shape[1])[None, :] < frame_lengths[:, None]
        for name, backbone in (("library", float_backbone), ("rewritten", rewritten)):
            hidden = backbone.before_layers(frames, valid)
            state = backbone.attention_state(hidden, valid)
            for index, layer in enumerate(backbone.encoder_layers()):
                hidden = backbone.run_layer(index, layer, hidden, state)
            last[name] = backbone.after_layers(hidden)[valid]
    assert torch.allclose(last["rewritten"], last["library"], atol=2e-5, rtol=1e-5)

    calibrated = linear_input_maxima(load_backbone(backbone_dirs[variant]), WAVES, batch_size=2)
    assert {name.split(".", 1)[1] for name in calibrated} == {
        f"attention.{projection}" for projection in ("q_proj", "k_proj", "v_proj", "out_proj")
    } | {"feed_forward.intermediate_dense", "feed_forward.output_dense"}  # a calibration covers them too

    int8_backbone = load_backbone(backbone_dirs[variant], quantization="int8")
    layers = len(int8_backbone.encoder_layers())
    assert quantized_linear_count(int8_backbone) == 6 * layers  # q, k, v, out, and the feed-forward's two
    assert all(isinstance(layer.attention.gru_rel_pos_linear, torch.nn.Linear)
               for layer in int8_backbone.encoder_layers())  # the tiny gate stays float
    convs = int8_backbone.model.feature_extractor.conv_layers
    assert quantized_conv_count(int8_backbone) == len(convs) - 1  # all but the 1 -> C first layer
    assert isinstance(convs[0].conv, torch.nn.Conv1d)


@pytest.mark.parametrize("variant", ["wavlm-postln", "wavlm-preln"])
def test_int8_cnn_rows_equal_each_row_alone_whatever_the_padding_holds(backbone_dirs, variant):
    backbone = load_backbone(backbone_dirs[variant], quantization="int8")
    modes = ("batched", "per_row") if backbone.cnn_needs_unpadded else ("auto",)  # "layer" norm: one path
    with torch.no_grad():
        alone = [backbone.front_end(wave[None], torch.tensor([len(wave)]))[0][0] for wave in WAVES]
        for mode in modes:
            backbone.front_end_mode = mode
            for garbage in (0.0, 50.0):
                frames, frame_lengths = backbone.front_end(*_padded(WAVES, garbage))
                for row, own in enumerate(alone):
                    assert int(frame_lengths[row]) == own.shape[0]
                    # A row's int8 steps are its own, but float sums in another order (the masked
                    # GroupNorm vs the library's, ~1e-6 apart) can move a value across an int8
                    # rounding boundary: one step on a few elements, ~4e-4 relative measured.
                    assert _relative_error(frames[row, : own.shape[0]], own) < 2e-3, (mode, garbage, row)
                    assert not frames[row, own.shape[0]:].any(), (mode, row)


def test_int8_conv_matches_conv1d_on_a_wavlm_base_shaped_cnn(tmp_path):
    # WavLM Base's CNN (7 layers, 512 channels, kernels 10/3/3/3/3/2/2) under a tiny transformer.
    config = WavLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, num_buckets=32,
                         max_bucket_distance=64)
    torch.manual_seed(0)
    WavLMModel(config).save_pretrained(tmp_path)
    float_backbone, int8_backbone = load_backbone(tmp_path), load_backbone(tmp_path, quantization="int8")
    assert quantized_conv_count(int8_backbone) == 6
    extractor = float_backbone.model.feature_extractor
    with torch.no_grad():
        # One layer alone equals the convolution up to int8 rounding: 8-bit steps of a Gaussian input
        # are ~9 sigma / 255, ~1% of the output's size (1.3% measured), the weights' ~0.5% on top.
        hidden = torch.randn(2, 512, 401)
        conv = extractor.conv_layers[1].conv
        assert _relative_error(Int8Conv1d(conv, full_range=True)(hidden), conv(hidden)) < 0.02
        # The whole CNN, then the front end (+ LayerNorm and projection), fixed-seed audio, padded
        # batch: six such layers in a row add up to ~sqrt(6) x 1.5% (3.7% / 4.2-4.5% measured; random
        # weights, so a bound on the arithmetic, not on answers); the tolerance leaves 1.5x of that.
        batch, lengths = _padded(WAVES)
        want, frame_lengths = float_backbone.front_end(batch, lengths)
        got, _ = int8_backbone.front_end(batch, lengths)
        cnn_error = _relative_error(int8_backbone.model.feature_extractor(WAVES[1][None]),
                                    extractor(WAVES[1][None]))
    assert cnn_error < (0.055 if VNNI else 0.075)  # 7-bit activations without VNNI: 6.0% measured
    for row, length in enumerate(frame_lengths.tolist()):
        assert _relative_error(got[row, :length], want[row, :length]) < (0.07 if VNNI else 0.10), row  # 8.0% 7-bit
