"""int8 encoder layers on a CPU (ELP_DTYPE=int8): same identity, float adapters, answers near float32."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from safetensors import safe_open

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.backbones.calibration import (
    CALIBRATION_FILE,
    SHIPPED_DIR,
    Int8Calibration,
    linear_input_maxima,
)
from elp.backbones.quantize import (
    RowwiseInt8Linear,
    SmoothedInt8Linear,
    cpu_has_vnni,
    int8_kernels_work,
    quantize_backbone,
    quantized_conv_count,
    quantized_linear_count,
    smoothing_factors,
)
from elp.errors import BackboneLoadError
from elp.model import pad_waveforms
from elp.testing import make_random_adapter_set, outputs_per_row, seeded_waveform
from tests.elp.int8_support import needs_vnni

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
    # feed-forward and attention projections (WavLM's once its attention calls them as modules)
    assert quantized_linear_count(int8_backbone) == 6 * layers
    assert quantized_linear_count(float_backbone) == 0
    # the wav2vec 2.0-family CNN's C -> C convolutions; Whisper's front end stays float
    convs = len(int8_backbone.model.feature_extractor.conv_layers) - 1 if variant.startswith("wavlm") else 0
    assert quantized_conv_count(int8_backbone) == convs and quantized_conv_count(float_backbone) == 0

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
def test_int8_mixed_batch_rows_equal_each_set_alone_bit_for_bit(backbone_dirs, variant):
    # Dynamic int8 picks its activation scales from what a call reads, so an int8 backbone encodes row
    # by row: every layer of a row in a mixed batch is the row alone, bit for bit (batched, one scale per
    # call, it moved by 1e-5 to 1e-4 here and more on the real model), and the float heads keep the float
    # path's contract.
    backbone = load_backbone(backbone_dirs[variant], quantization="int8")
    model = MultiAdapterModel(backbone)
    for seed, task in enumerate(TASKS):
        model.add_adapter_set(task, make_random_adapter_set(backbone, task, seed=seed))
    batch, lengths = pad_waveforms(WAVES)
    with torch.no_grad():
        mixed = model.encode(batch, lengths, list(TASKS))
        for row, task in enumerate(TASKS):
            alone = model.encode(WAVES[row][None], lengths[row:row + 1], [task])
            frames = int(alone.lengths[0])
            assert int(mixed.lengths[row]) == frames
            for layer, state in enumerate(alone.hidden_states):
                assert torch.equal(mixed.hidden_states[layer][row, :frames], state[0]), (task, layer)
    heads = outputs_per_row(model, WAVES, list(TASKS))
    for row, task in enumerate(TASKS):
        torch.testing.assert_close(heads[row], outputs_per_row(model, [WAVES[row]], [task])[0], atol=1e-5, rtol=1e-5)


def test_unknown_scheme_and_gpu_are_refused(backbone_dirs):
    backbone = load_backbone(backbone_dirs["whisper-postln"])
    with pytest.raises(BackboneLoadError, match="unknown quantisation"):
        quantize_backbone(backbone, "int4")
    meta = load_backbone(backbone_dirs["whisper-postln"]).to("meta")
    with pytest.raises(BackboneLoadError, match="CPUs only"):
        quantize_backbone(meta, "int8")


# --------------------------------------------------------------- smoothing and the calibration file
CALIBRATION_WAVES = [seeded_waveform(seconds, seed=10 + seed) for seed, seconds in enumerate((1.1, 0.8, 1.4))]


def _calibration(backbone, keep_float=()):
    maxima = linear_input_maxima(backbone, CALIBRATION_WAVES, batch_size=2)
    return Int8Calibration(maxima, set(keep_float), backbone.identity.fingerprint, "seeded test waves")


@needs_vnni
def test_smoothing_is_exact_in_float_and_shrinks_int8_error_on_an_outlier_channel():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    inputs = torch.randn(200, 64)
    inputs[:, 5] *= 40.0  # one outlying input channel, as in Whisper's feed-forward
    scale = smoothing_factors(inputs.abs().amax(0), linear.weight)
    with torch.no_grad():
        reference = linear(inputs)
        exact = torch.nn.functional.linear(inputs / scale, linear.weight * scale, linear.bias)
        assert torch.allclose(exact, reference, atol=1e-4)
        seven_bit = _relative_error(SmoothedInt8Linear(linear, None, full_range=False)(inputs), reference)
        eight_bit = _relative_error(SmoothedInt8Linear(linear, None, full_range=True)(inputs), reference)
        smoothed = _relative_error(SmoothedInt8Linear(linear, scale, full_range=True)(inputs), reference)
    assert eight_bit < 0.75 * seven_bit  # 8-bit activations alone
    assert smoothed < 0.5 * eight_bit  # smoothing on top
    assert smoothed < 0.02


@needs_vnni
def test_rowwise_int8_linear_gives_each_row_its_answer_alone():
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 24)
    inputs = torch.randn(3, 2, 48)
    inputs[0] *= 30.0  # a loud row: one scale for the call would coarsen the quiet rows' steps
    rowwise = RowwiseInt8Linear.from_linear(linear, full_range=True)
    with torch.no_grad():
        batched = rowwise(inputs)
        for row in range(3):
            assert torch.equal(batched[row:row + 1], rowwise(inputs[row:row + 1]))
            assert _relative_error(batched[row], linear(inputs[row])) < 0.02
        one_call = SmoothedInt8Linear(linear, None, full_range=True)(inputs)
    assert not torch.equal(one_call[1:], batched[1:])  # one scale per call would move the quiet rows


def test_calibration_is_deterministic_and_round_trips(backbone_dirs, tmp_path):
    backbone = load_backbone(backbone_dirs["whisper-postln"])
    first, second = _calibration(backbone, ["0.fc2"]), _calibration(backbone)
    assert first.maxima.keys() == second.maxima.keys() and len(first.maxima) == 6 * len(backbone.encoder_layers())
    assert all(torch.equal(first.maxima[name], second.maxima[name]) for name in first.maxima)
    loaded = Int8Calibration.load(first.save(tmp_path), backbone)
    assert loaded.keep_float == {"0.fc2"} and loaded.fingerprint == backbone.identity.fingerprint
    for name, value in first.maxima.items():  # stored in float16
        assert torch.allclose(loaded.maxima[name], value, rtol=1e-3, atol=1e-4), name
    other = load_backbone(backbone_dirs["wavlm-postln"])
    with pytest.raises(BackboneLoadError, match="int8 calibration"):
        Int8Calibration.load(tmp_path / f"{backbone.identity.fingerprint}.safetensors", other)


def test_calibration_next_to_the_backbone_is_applied_and_answers_stay_near_float32(backbone_dirs, tmp_path, caplog):
    source = backbone_dirs["whisper-postln"]
    folder = tmp_path / "backbone"
    shutil.copytree(source, folder)
    float_backbone = load_backbone(folder)
    _calibration(float_backbone, ["1.fc2"]).save(folder / CALIBRATION_FILE)
    with caplog.at_level(logging.INFO, logger="elp.backbones.quantize"):
        smoothed = load_backbone(folder, quantization="int8")
    # operators see what was applied
    assert "(1 kept float), 0 front-end convolutions in int8, calibration seeded test waves" in caplog.text
    plain = load_backbone(folder, quantization="int8-plain")
    assert smoothed.identity == float_backbone.identity  # sets trained in float32 still load
    assert smoothed.int8_calibration == "seeded test waves" and plain.int8_calibration is None
    layers = len(smoothed.encoder_layers())
    assert quantized_linear_count(smoothed) == 6 * layers - 1  # 1.fc2 stays float
    assert isinstance(smoothed.encoder_layers()[1].fc2, torch.nn.Linear)
    outputs = {}
    for name, backbone in (("float", float_backbone), ("int8", smoothed)):
        model = MultiAdapterModel(backbone)
        for seed, task in enumerate(TASKS):
            model.add_adapter_set(task, make_random_adapter_set(float_backbone, task, seed=seed))
        outputs[name] = outputs_per_row(model, WAVES, list(TASKS))
    for task, full, reduced in zip(TASKS, outputs["float"], outputs["int8"], strict=True):
        assert _relative_error(reduced, full) < 0.05, task


def test_shipped_calibrations_are_named_by_their_fingerprint_and_complete():
    shipped = sorted(SHIPPED_DIR.glob("*.safetensors"))
    assert shipped  # Whisper base's, applied by ELP_DTYPE=int8
    for path in shipped:
        with safe_open(str(path), framework="pt") as handle:
            metadata, names = handle.metadata(), set(handle.keys())
        assert metadata["fingerprint"] == path.stem and "train" in metadata["source"]
        assert set(json.loads(metadata["keep_float"])) <= names


def test_vnni_detection_reads_the_cpu_flags(tmp_path):
    (tmp_path / "vnni").write_text("flags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    (tmp_path / "avx2").write_text("flags\t\t: fpu sse avx2\n")
    assert cpu_has_vnni(tmp_path / "vnni") and not cpu_has_vnni(tmp_path / "avx2")
    assert not cpu_has_vnni(tmp_path / "missing")


@pytest.mark.parametrize("vnni", [True, False])
def test_auto_is_int8_only_on_a_vnni_cpu_for_a_calibrated_backbone(backbone_dirs, tmp_path, monkeypatch, caplog, vnni):
    """ELP_DTYPE=auto (the default): int8 only where it was measured to keep answers."""
    import elp.backbones as backbones

    monkeypatch.setattr(backbones, "cpu_has_vnni", lambda: vnni)
    folder = tmp_path / "backbone"
    shutil.copytree(backbone_dirs["whisper-postln"], folder)
    with caplog.at_level(logging.INFO, logger="elp.backbones"):
        uncalibrated = load_backbone(folder, quantization="auto")
    assert uncalibrated.quantization is None and quantized_linear_count(uncalibrated) == 0
    assert "float32 encoder" in caplog.text and "no int8 calibration" in caplog.text
    _calibration(uncalibrated, []).save(folder / CALIBRATION_FILE)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="elp.backbones"):
        calibrated = load_backbone(folder, quantization="auto")
    assert calibrated.identity == uncalibrated.identity
    if vnni:
        assert calibrated.quantization == "int8" and calibrated.int8_calibration == "seeded test waves"
        assert quantized_linear_count(calibrated) == 6 * len(calibrated.encoder_layers())
    else:
        assert calibrated.quantization is None and "no VNNI on this CPU" in caplog.text


def test_auto_stays_float32_where_the_int8_kernels_fail(backbone_dirs, tmp_path, monkeypatch, caplog):
    """A torch build without the kernels (or without the packed-weight attribute int8 reads) must
    not stop a default server: auto falls back to float32 and says why."""
    import elp.backbones as backbones

    assert int8_kernels_work() is None  # this torch runs them
    monkeypatch.setattr(backbones, "cpu_has_vnni", lambda: True)
    monkeypatch.setattr(backbones, "int8_kernels_work", lambda: "RuntimeError: no quantized engine")
    folder = tmp_path / "backbone"
    shutil.copytree(backbone_dirs["whisper-postln"], folder)
    _calibration(load_backbone(folder), []).save(folder / CALIBRATION_FILE)
    with caplog.at_level(logging.INFO, logger="elp.backbones"):
        backbone = load_backbone(folder, quantization="auto")
    assert backbone.quantization is None and "int8 kernels unavailable (RuntimeError" in caplog.text
