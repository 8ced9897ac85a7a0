"""Backbone loading: one family file per architecture, picked by the config's ``model_type``."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

# Answers must not depend on how many threads computed them. MKL's float32 GEMM splits its sums by thread count;
# the last-bit differences flip steps of a dynamic-int8 encoder's activations, so on some CPUs (AMX, measured)
# an emotion logit moved by 0.014 between 1 and 2 threads, and the server, which gives a batch all cores or a
# share of them by load, answered a clip differently under load. Strict conditional numerical reproducibility
# fixes the split (no cost measured: Whisper base, 12 clips, 3 rounds). MKL reads it at its first call, so it is
# set where backbones load, before any model runs (not on ``import elp``: the HTTP client imports the task
# registry and must not change its user's MKL); a value the user set is kept.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import torch  # noqa: E402
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, WhisperFeatureExtractor, WhisperModel

from elp.backbones.base import Backbone, BackboneIdentity, fingerprint_module
from elp.backbones.calibration import Int8Calibration, find_calibration
from elp.backbones.quantize import QUANTIZATIONS, cpu_has_vnni, int8_kernels_work, quantize_backbone
from elp.backbones.wav2vec2 import Wav2Vec2FamilyBackbone
from elp.backbones.whisper import WhisperEncoderBackbone
from elp.errors import BackboneLoadError

log = logging.getLogger(__name__)
# ContentVec loads as HuBERT and WavLM+ as WavLM: same architectures, other weights.
WAV2VEC2_FAMILY = ("wav2vec2", "hubert", "wavlm")
SUPPORTED_MODEL_TYPES = (*WAV2VEC2_FAMILY, "whisper")
_STRUCTURE_KEYS = (
    "model_type", "hidden_size", "d_model", "num_hidden_layers", "encoder_layers", "num_attention_heads",
    "encoder_attention_heads", "intermediate_size", "encoder_ffn_dim", "do_stable_layer_norm",
    "feat_extract_norm", "conv_dim", "conv_kernel", "conv_stride", "num_mel_bins", "max_source_positions",
)


def _structure_json(config) -> str:
    """The config fields that define the computation (not paths, versions or dtypes)."""
    values = {key: getattr(config, key) for key in _STRUCTURE_KEYS if hasattr(config, key)}
    return json.dumps(values, sort_keys=True, default=list)


def _wants_waveform_normalization(name_or_path: str, config) -> bool:
    try:
        return bool(getattr(AutoFeatureExtractor.from_pretrained(name_or_path), "do_normalize", False))
    except Exception:  # no preprocessor_config.json: fall back to the convention of released models
        return getattr(config, "feat_extract_norm", "group") == "layer"


def load_backbone(
    name_or_path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
    quantization: str | None = None,
) -> Backbone:
    """Load a frozen encoder from a local folder or a hub id (``microsoft/wavlm-base-plus``, ...).

    The fingerprint is taken on the float32 weights as loaded, so the same checkpoint served in
    fp16 on a GPU, or with int8 encoder layers on a CPU (``quantization="int8"``), still accepts
    adapter sets trained in fp32. int8 reads its activation calibration (``elp.backbones.calibration``)
    from the backbone's folder or the ones shipped with the package; ``quantization="auto"`` is int8
    where that is measured to hold and float32 elsewhere (``auto_quantization``).
    """
    name = str(name_or_path)
    options: dict = {"dtype": torch.float32}
    if attn_implementation:
        options["attn_implementation"] = attn_implementation
    try:
        config = AutoConfig.from_pretrained(name)
    except Exception as exc:  # transformers raises OSError/ValueError/HTTP errors alike
        raise BackboneLoadError(f"cannot read a transformers config from {name!r}: {exc}") from exc
    model_type = config.model_type
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise BackboneLoadError(f"unsupported backbone type {model_type!r}; supported: {SUPPORTED_MODEL_TYPES}")
    try:
        if model_type == "whisper":
            full = WhisperModel.from_pretrained(name, **options)
            module = full.get_encoder()
            del full
            try:
                extractor = WhisperFeatureExtractor.from_pretrained(name)
            except Exception:
                extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
            hidden_size, num_layers = config.d_model, config.encoder_layers
        else:
            module = AutoModel.from_pretrained(name, **options)
            hidden_size, num_layers = config.hidden_size, config.num_hidden_layers
    except Exception as exc:
        raise BackboneLoadError(f"cannot load backbone weights from {name!r}: {exc}") from exc

    identity = BackboneIdentity(
        model_type=model_type,
        hidden_size=int(hidden_size),
        num_layers=int(num_layers),
        fingerprint=fingerprint_module(_structure_json(config), module),
        name=Path(name).name if Path(name).exists() else name,
    )
    backbone: Backbone
    if model_type == "whisper":
        backbone = WhisperEncoderBackbone(module, identity, torch.from_numpy(extractor.mel_filters))
    else:
        backbone = Wav2Vec2FamilyBackbone(module, identity, _wants_waveform_normalization(name, config))
    backbone = backbone.to(device=device, dtype=dtype)
    backbone.source = name
    if not quantization:
        return backbone
    calibration_path = find_calibration(backbone, name if Path(name).is_dir() else None)
    if quantization == "auto":
        quantization = auto_quantization(backbone, calibration_path)
        if quantization is None:
            return backbone
    calibration = Int8Calibration.load(calibration_path, backbone) if calibration_path else None
    return quantize_backbone(backbone, quantization, calibration)


def float32_copy(backbone: Backbone) -> Backbone | None:
    """The float32 encoder a quantised ``backbone`` was made from, loaded again from its ``source``
    (None when that is unknown or now holds other weights): for sets that must read float outputs."""
    if backbone.source is None:
        return None
    try:
        copy = load_backbone(backbone.source, device=backbone.device)
    except BackboneLoadError:
        return None
    return copy.eval() if copy.identity.fingerprint == backbone.identity.fingerprint else None


def auto_quantization(backbone: Backbone, calibration_path: Path | None) -> str | None:
    """``quantization="auto"``: int8 where it was measured to keep answers (docs/server.md, Precision):
    a CPU with VNNI (8-bit activations) and an int8 calibration for this very backbone (the shipped
    Whisper base has one) and a torch whose int8 kernels run; float32 anywhere else, with the reason
    logged."""
    reasons = [reason for failed, reason in (
        (backbone.device.type != "cpu", f"device {backbone.device.type}"),
        (not cpu_has_vnni(), "no VNNI on this CPU"),
        (calibration_path is None, f"no int8 calibration for backbone {backbone.identity.fingerprint[:12]}"),
    ) if failed]
    if not reasons and (broken := int8_kernels_work()) is not None:
        reasons.append(f"int8 kernels unavailable ({broken})")
    if reasons:
        log.info("dtype auto: float32 encoder (%s)", "; ".join(reasons))
        return None
    log.info("dtype auto: int8 encoder (VNNI CPU, calibration %s)", calibration_path)
    return "int8"


__all__ = [
    "QUANTIZATIONS",
    "SUPPORTED_MODEL_TYPES",
    "Backbone",
    "BackboneIdentity",
    "Wav2Vec2FamilyBackbone",
    "WhisperEncoderBackbone",
    "load_backbone",
]
