"""The batched front end gives every row what the per-row loop (the reference) gives it: Whisper's
log-mel and the wav2vec 2.0-family CNN with its time-wise GroupNorm, on mixed lengths with junk in
the padding; served answers do not depend on the mode; on a CPU the batch is never pinned."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from elp import MultiAdapterModel, load_backbone, pad_waveforms
from elp.backbones.front_end import batched_log_mel, masked_group_norm
from elp.backbones.whisper import HOP_LENGTH, N_FFT
from elp.host_staging import PinnedBatchStaging
from elp.testing import make_random_adapter_set, seeded_waveform

# lengths that are and are not multiples of the hop, a clip shorter than one FFT window (Whisper
# only: the tiny CNNs need more samples than that), and the longest row last but not alone
SECONDS = (0.4, 1.3, 0.9, 0.05, 2.03, 1.9999)


def _junk_padded(waves: list[torch.Tensor], extra: int = 0, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """The padded batch with noise instead of zeros past each row (and ``extra`` columns beyond the
    longest row): the per-row path never reads it, so the batched one must not either."""
    padded, lengths = pad_waveforms(waves)
    padded = nn.functional.pad(padded, (0, extra))
    junk = torch.randn(padded.shape, generator=torch.Generator().manual_seed(seed))
    beyond = torch.arange(padded.shape[1])[None, :] >= lengths[:, None]
    return torch.where(beyond, junk, padded), lengths


def _run(backbone, mode: str, padded: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    backbone.front_end_mode = mode
    with torch.no_grad():
        return backbone.front_end(padded, lengths)


def test_batched_front_end_equals_the_per_row_loop(backbone):
    seconds = SECONDS if backbone.identity.model_type == "whisper" else (0.4, 1.3, 0.9, 0.2, 2.03, 1.9999)
    waves = [seeded_waveform(s, seed=i) for i, s in enumerate(seconds)]
    padded, lengths = _junk_padded(waves, extra=480)
    reference, reference_lengths = _run(backbone, "per_row", padded, lengths)
    batched, batched_lengths = _run(backbone, "batched", padded, lengths)
    assert torch.equal(batched_lengths, reference_lengths)
    assert batched.shape == reference.shape
    torch.testing.assert_close(batched, reference, atol=1e-5, rtol=1e-5)
    beyond = torch.arange(batched.shape[1])[None, :] >= batched_lengths[:, None]
    assert not batched[beyond].any()  # frames past a row stay zero
    for row, wave in enumerate(waves):  # and the reference is each clip run alone
        alone, _ = _run(backbone, "per_row", wave[None], lengths[row : row + 1])
        torch.testing.assert_close(batched[row, : alone.shape[1]], alone[0], atol=1e-5, rtol=1e-5)


def test_batched_log_mel_equals_each_clips_log_mel(backbone_dirs):
    backbone = load_backbone(backbone_dirs["whisper-postln"])
    waves = [seeded_waveform(s, seed=10 + i) for i, s in enumerate((*SECONDS, 0.0125))]  # 0.0125 s: 1 frame
    # a quiet row with silence in it next to a loud one: each row's floor (its own max - 8) differs
    quiet = seeded_waveform(1.0, seed=30) * 1e-3
    quiet[4000:8000] = 0.0
    waves += [quiet, seeded_waveform(0.7, seed=31) * 3.0]
    padded, lengths = _junk_padded(waves, extra=1000)
    mels = batched_log_mel(padded, lengths, backbone.mel_filters, backbone.window, N_FFT, HOP_LENGTH)
    assert mels.shape == (len(waves), 80, int(lengths.max()) // HOP_LENGTH)
    for row, wave in enumerate(waves):
        alone = backbone.log_mel(wave)
        torch.testing.assert_close(mels[row, :, : alone.shape[-1]], alone, atol=1e-5, rtol=1e-5)
        assert not mels[row, :, alone.shape[-1] :].any()


@pytest.mark.parametrize("groups", [8, 4, 1], ids=["per-channel", "grouped", "one-group"])
def test_masked_group_norm_equals_group_norm_on_each_row_alone(groups):
    generator = torch.Generator().manual_seed(3)
    norm = nn.GroupNorm(groups, 8, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(8, generator=generator))
        norm.bias.copy_(torch.randn(8, generator=generator))
    lengths = torch.tensor([5, 17, 2, 12])
    hidden = torch.randn(4, 8, 17, generator=generator) * 3 + 1
    normed = masked_group_norm(hidden, lengths, norm)
    for row, length in enumerate(lengths.tolist()):
        expected = norm(hidden[row : row + 1, :, :length])[0]
        torch.testing.assert_close(normed[row, :, :length], expected, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(normed).all()


@pytest.mark.parametrize("variant", ["whisper-postln", "wavlm-postln"])
def test_served_answers_do_not_depend_on_the_front_end_mode(backbone_dirs, variant):
    backbone = load_backbone(backbone_dirs[variant])
    model = MultiAdapterModel(backbone)
    sets = {"asr": dict(task="asr", method="elp", num_prompt_frames=3, prompt_position="prefix", seed=1),
            "spk": dict(task="verification", method="el", seed=2),
            "emo": dict(task="emotion", method="ep", num_prompt_frames=2, prompt_position="suffix", seed=3)}
    for key, options in sets.items():
        model.add_adapter_set(key, make_random_adapter_set(backbone, **options))
    keys = ["asr", "emo", "spk", "asr", "spk"]
    waves = [seeded_waveform(0.3 + 0.37 * i, seed=20 + i) for i in range(len(keys))]
    outputs = {}
    for mode in ("per_row", "batched"):
        backbone.front_end_mode = mode
        outputs[mode] = model.head_outputs(waves, keys)
    for per_row, batched in zip(outputs["per_row"], outputs["batched"], strict=True):
        assert (per_row.task, per_row.adapter) == (batched.task, batched.adapter)
        torch.testing.assert_close(batched.output, per_row.output, atol=1e-5, rtol=1e-5)


def test_auto_mode_batches_on_a_gpu_only_and_unknown_modes_are_refused(backbone_dirs):
    backbone = load_backbone(backbone_dirs["whisper-postln"])
    assert backbone.front_end_mode == "auto" and not backbone.batches_front_end()  # CPU: the loop
    backbone.front_end_mode = "batched"
    assert backbone.batches_front_end()
    backbone.front_end_mode = "batch"
    with pytest.raises(ValueError, match="front_end_mode"):
        backbone.batches_front_end()


def test_cpu_batches_are_padded_as_before_without_pinned_staging(backbone_dirs, monkeypatch):
    backbone = load_backbone(backbone_dirs["whisper-postln"])
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("emo", make_random_adapter_set(backbone, task="emotion", method="l", seed=4))
    waves = [seeded_waveform(0.5, seed=1), seeded_waveform(1.1, seed=2)]
    expected = model.head_outputs(waves, ["emo", "emo"])

    def no_staging(*args, **kwargs):
        raise AssertionError("a CPU batch went through pinned staging")

    monkeypatch.setattr(PinnedBatchStaging, "upload", no_staging)
    got = model.head_outputs(waves, ["emo", "emo"])
    for before, after in zip(expected, got, strict=True):
        assert torch.equal(before.output, after.output)
