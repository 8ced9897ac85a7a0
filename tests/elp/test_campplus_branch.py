"""The CAM++ voice branch (elp.heads.campplus) and its converter (elp.convert.campplus_branch): the front end
equals Kaldi's filterbanks, the network has the published layout tensor for tensor, rows are independent,
and a set carrying it round-trips through safetensors + JSON and fuses as its config says."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from elp.convert import campplus_branch
from elp.errors import ConfigError
from elp.heads import campplus
from elp.heads.campplus import SEGMENT_FRAMES, CamppBranch, CamppConfig, _MaskedConv, _pointwise, _segment_means
from elp.heads.voice import branch_from_record
from elp.testing import make_random_adapter_set, seeded_waveform, voice_rows_alone_and_in_a_batch, voice_set_round_trip

# The published checkpoint's state dict (3D-Speaker's zh-en "common advanced" CAM++): tensors, values in all.
PUBLISHED_TENSORS, PUBLISHED_VALUES = 937, 6_930_842


@pytest.fixture(scope="module")
def branch() -> CamppBranch:
    torch.manual_seed(0)
    model = CamppBranch().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that a wrong statistic would show
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("seconds", [0.02, 0.6, 2.37])
def test_filterbanks_are_kaldis(branch, seconds):
    knf = pytest.importorskip("kaldi_native_fbank")
    wave = seeded_waveform(seconds, seed=4) * 0.3
    options = knf.FbankOptions()
    options.frame_opts.dither = 0.0
    options.mel_opts.num_bins = 80
    reference = knf.OnlineFbank(options)
    reference.accept_waveform(16000, wave.tolist())
    reference.input_finished()
    expected = np.stack([reference.get_frame(i) for i in range(reference.num_frames_ready)]) \
        if reference.num_frames_ready else None
    mine = branch.features(wave).numpy()
    if expected is None:  # under one 25 ms frame: Kaldi gives none, the branch one padded frame
        assert mine.shape == (1, 80)
        return
    assert mine.shape == expected.shape
    assert np.abs(mine - (expected - expected.mean(axis=0))).max() < 1e-3


def test_network_has_the_published_layout(branch):
    state = branch.state_dict()
    assert len(state) == PUBLISHED_TENSORS
    assert sum(v.numel() for v in state.values()) == PUBLISHED_VALUES
    assert state["xvector.tdnn.linear.weight"].shape == (128, 320, 5)
    assert state["xvector.block2.tdnnd24.cam_layer.linear_local.weight"].shape == (32, 128, 3)
    assert state["xvector.dense.linear.weight"].shape == (192, 1024, 1)
    assert "xvector.dense.nonlinear.batchnorm.weight" not in state  # the last BatchNorm is not affine
    with pytest.raises(ConfigError):
        CamppConfig(hidden=64)


def test_rows_do_not_depend_on_batch_mates_or_padding(branch):
    together, alone = voice_rows_alone_and_in_a_batch(branch)
    assert torch.allclose(together.norm(dim=1), torch.ones(2), atol=1e-5)
    # a random network puts every clip near one direction: compare with how far two clips' answers are apart
    gap = float((together[0] - together[1]).abs().max())
    assert gap > 1e-4 and float((together[0] - alone[0]).abs().max()) < gap / 100


def test_level_does_not_change_the_embedding(branch):
    """Mean-normalised log filterbanks: a gain is a constant per band, removed with the clip's mean."""
    wave = seeded_waveform(1.5, seed=9) * 0.2
    with torch.no_grad():
        loud, quiet = (branch(w.unsqueeze(0), torch.tensor([w.numel()])) for w in (wave, wave * 0.05))
    assert float((loud * quiet).sum()) > 0.9999


def test_converter_reads_a_state_dict_without_running_code_and_writes_a_branch_folder(branch, tmp_path):
    checkpoint = tmp_path / "campplus.pt"
    torch.save({k: v.clone() for k, v in branch.state_dict().items()}, checkpoint)
    converted = campplus_branch.branch_from_checkpoint(checkpoint)
    assert converted.config == CamppConfig()
    campplus_branch.write_branch(converted, tmp_path / "out", checkpoint)
    record = json.loads((tmp_path / "out" / "voice_branch.json").read_text())
    assert record["config"]["kind"] == "campplus" and "Apache-2.0" in record["licence"]
    from training.voice_fusion import load_branch

    loaded = load_branch(tmp_path / "out")
    wave = seeded_waveform(1.7, seed=8)
    with torch.no_grad():
        assert torch.allclose(loaded(wave.unsqueeze(0), torch.tensor([wave.numel()])),
                              branch(wave.unsqueeze(0), torch.tensor([wave.numel()])), atol=1e-6)
    assert isinstance(branch_from_record(record["config"]), CamppBranch)
    torch.save({"lstm.weight_hh_l0": torch.zeros(4, 1)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not a CAM"):
        campplus_branch.branch_from_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize("variant", ["whisper-postln"])
def test_set_with_a_campplus_branch_round_trips_and_fuses(backbone, branch, tmp_path):
    served, expected, head = voice_set_round_trip(backbone, branch, 0.8, tmp_path / "speaker")
    assert head["voice_kind"] == "campplus" and served == pytest.approx(expected, abs=1e-4)

def test_branch_runs_in_bfloat16_close_to_float32(branch):
    wave = seeded_waveform(2.2, seed=12).unsqueeze(0)
    half = CamppBranch().eval()
    half.load_state_dict(branch.state_dict())
    with torch.no_grad():
        full = branch(wave, torch.tensor([wave.shape[1]]))
        low = half.to(torch.bfloat16)(wave, torch.tensor([wave.shape[1]]))
    assert low.dtype == torch.float32  # the answer is float32 whatever the weights' dtype
    assert float((full - low).abs().max()) < 0.05 * float((full - full.mean()).abs().max())


@pytest.mark.parametrize("variant", ["whisper-postln"])
def test_the_campplus_baseline_is_the_branch_a_set_carries(backbone, branch, tmp_path):
    """``elp-evaluate --baselines campplus``: CAM++ alone, read from the speaker set that fuses it."""
    from training.suites import baselines

    voice_set_round_trip(backbone, branch, 0.8, tmp_path / "speaker")
    embed = baselines.campplus(str(tmp_path / "speaker"))
    wave = seeded_waveform(1.3, seed=21)
    with torch.no_grad():
        expected = branch(wave.unsqueeze(0), torch.tensor([wave.numel()]))[0].numpy()
    assert np.allclose(embed(wave.numpy()), expected, atol=1e-6)
    assert list(baselines.speaker_baselines(["campplus"])) == ["CAM++ alone"]  # the shipped set carries one
    make_random_adapter_set(backbone, "verification", seed=1).save(tmp_path / "plain")
    with pytest.raises(SystemExit, match="no CAM"):
        baselines.campplus(str(tmp_path / "plain"))


def test_one_masked_pass_gives_each_row_its_answer_alone(branch):
    """The GPU path: rows of different lengths (one frame, under and over the masking's 100-frame segments,
    odd frame counts for the TDNN's stride) in one padded pass, each row equal to its own pass."""
    clips = [seeded_waveform(seconds, seed=seed) * 0.3 for seed, seconds in enumerate((0.02, 0.61, 1.37, 2.93))]
    feats = [branch.features(clip) for clip in clips]
    frames = torch.tensor([f.shape[0] for f in feats])
    assert frames[0] == 1 and frames[-1] > 2 * 100
    with torch.no_grad():
        together = branch.embed_features(torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), frames)
        alone = torch.cat([branch.embed_features(f.unsqueeze(0)) for f in feats])
    scale = float(alone.abs().max())
    assert float((together - alone).abs().max()) < 1e-5 * scale
    gap = float((alone[1] - alone[2]).abs().max())  # rows differ by far more than the paths do
    assert gap > 1e3 * float((together - alone).abs().max())


def _masking_per_frame(layer: _MaskedConv, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The published context-aware masking: the gate's convolutions run at every frame on the clip's mean plus the
    frame's segment mean."""
    x = x if mask is None else x * mask
    mean = x.mean(-1, keepdim=True) if mask is None else x.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True)
    segment = _segment_means(x, mask).repeat_interleave(SEGMENT_FRAMES, dim=-1)[..., : x.shape[-1]]
    out = layer.linear_local(x) * torch.sigmoid(layer.linear2(torch.relu(layer.linear1(mean + segment))))
    return out if mask is None else out * mask


@pytest.mark.parametrize("masked", [False, True])
def test_the_gate_computed_once_a_segment_equals_the_gate_at_every_frame(masked):
    torch.manual_seed(3)
    layer = _MaskedConv(16, 8, dilation=2).eval()
    x = torch.randn(2, 16, 2 * SEGMENT_FRAMES + 57)  # two whole segments and a partial one
    mask = (torch.arange(x.shape[-1]) < torch.tensor([[x.shape[-1]], [130]])).float().unsqueeze(1) if masked else None
    with torch.no_grad():
        fast, published = layer(x, mask), _masking_per_frame(layer, x, mask)
    assert float((fast - published).abs().max()) < 1e-5 * float(published.abs().max())
    assert float(published[0].std()) > 0.1  # not a trivially zero comparison


@pytest.mark.parametrize("bias", [False, True])
def test_a_kernel_one_convolution_as_a_matrix_product(bias):
    torch.manual_seed(4)
    conv = torch.nn.Conv1d(12, 5, 1, bias=bias)
    x = torch.randn(3, 12, 41)
    with torch.no_grad():
        assert torch.allclose(_pointwise(conv, x), conv(x), atol=1e-6)


def test_the_front_gives_the_same_frames_in_either_memory_layout(branch, monkeypatch):
    feats = branch.features(seeded_waveform(1.9, seed=13) * 0.3).unsqueeze(0)
    with torch.no_grad():
        channels_last = branch.head(feats)
        monkeypatch.setattr(campplus, "_conv_layout", lambda x: x)
        contiguous = branch.head(feats)
    assert float((channels_last - contiguous).abs().max()) < 1e-5 * float(contiguous.abs().max())


def test_rows_of_one_length_run_together_and_come_back_in_order(branch):
    """A CPU's path: rows of equal length in one unmasked pass (diarization's windows), other lengths apart; every
    row equal to its own pass, in the order the rows came."""
    clips = [seeded_waveform(seconds, seed=seed) * 0.3 for seed, seconds in enumerate((1.5, 0.7, 1.5, 1.5, 0.7))]
    feats = [branch.features(clip) for clip in clips]
    with torch.no_grad():
        grouped = branch.embed_rows(feats, one_pass=False)
        alone = torch.cat([branch.embed_features(f.unsqueeze(0)) for f in feats])
    scale = float(alone.abs().max())
    assert float((grouped - alone).abs().max()) < 1e-5 * scale
    gap = min(float((alone[i] - alone[j]).abs().max()) for i in range(5) for j in range(i + 1, 5))
    assert float((grouped - alone).abs().max()) < gap / 100  # a row out of order would show
