"""int8 encoder layers on a CPU (ELP_DTYPE=int8): same identity, float adapters, answers near float32."""

from __future__ import annotations

import pytest
import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.backbones.quantize import quantize_backbone, quantized_linear_count
from elp.errors import BackboneLoadError
from elp.testing import make_random_adapter_set, outputs_per_row, seeded_waveform

WAVES = [seeded_waveform(seconds, seed=seed) for seed, seconds in enumerate((1.0, 1.6, 0.7, 1.3))]
TASKS = ("asr", "verification", "emotion", "intent")


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.float() - want.float()).norm() / want.float().norm().clamp_min(1e-6))


@pytest.mark.parametrize("variant", ["wavlm-postln", "whisper-postln"])
def test_int8_backbone_keeps_identity_and_answers_near_float32(backbone_dirs, variant, tmp_path):
    float_backbone = load_backbone(backbone_dirs[variant])
    int8_backbone = load_backbone(backbone_dirs[variant], quantization="int8")
    # adapter sets trained on the float weights must still load: the fingerprint is the float one
    assert int8_backbone.identity == float_backbone.identity
    assert int8_backbone.quantization == "int8" and float_backbone.quantization is None
    layers = len(int8_backbone.encoder_layers())
    # feed-forward everywhere; attention projections too where the family calls them as modules
    assert quantized_linear_count(int8_backbone) == (2 if variant.startswith("wavlm") else 6) * layers
    assert quantized_linear_count(float_backbone) == 0

    outputs = {}
    for name, backbone in (("float", float_backbone), ("int8", int8_backbone)):
        model = MultiAdapterModel(backbone)
        for seed, task in enumerate(TASKS):
            make_random_adapter_set(float_backbone, task, seed=seed).save(tmp_path / task)
            model.add_adapter_set(task, AdapterSet.load(tmp_path / task))
        outputs[name] = outputs_per_row(model, WAVES, list(TASKS))
        assert all(parameter.dtype == torch.float32 for parameter in model.adapter_sets["asr"].parameters())
    for task, full, reduced in zip(TASKS, outputs["float"], outputs["int8"], strict=True):
        assert torch.isfinite(reduced).all(), task
        assert _relative_error(reduced, full) < 0.1, task


@pytest.mark.parametrize("variant", ["wavlm-postln", "whisper-postln"])
def test_int8_mixed_batch_rows_stay_near_each_set_alone(backbone_dirs, variant):
    # Dynamic int8 picks one activation scale per call, so a row's answer depends a little on its
    # batch-mates: mixed batches equal single-set runs within a tolerance, not bit for bit.
    backbone = load_backbone(backbone_dirs[variant], quantization="int8")
    model = MultiAdapterModel(backbone)
    for seed, task in enumerate(TASKS):
        model.add_adapter_set(task, make_random_adapter_set(backbone, task, seed=seed))
    mixed = outputs_per_row(model, WAVES, list(TASKS))
    for row, task in enumerate(TASKS):
        alone = outputs_per_row(model, [WAVES[row]], [task])[0]
        assert _relative_error(mixed[row], alone) < 0.1, task


def test_unknown_scheme_and_gpu_are_refused(backbone_dirs):
    backbone = load_backbone(backbone_dirs["whisper-postln"])
    with pytest.raises(BackboneLoadError, match="unknown quantisation"):
        quantize_backbone(backbone, "int4")
    meta = load_backbone(backbone_dirs["whisper-postln"]).to("meta")
    with pytest.raises(BackboneLoadError, match="CPUs only"):
        quantize_backbone(meta, "int8")
