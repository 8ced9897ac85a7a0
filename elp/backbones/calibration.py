"""Activation calibration for the int8 backbone: per input channel, the largest |x| each encoder
Linear sees on speech, and which Linears stay in float32.

Why a file: smoothing (``elp.backbones.quantize``) needs activation statistics of real speech, which
the server cannot compute at load time (it has no corpus, and synthetic audio has other outlier
channels). A calibration is small (one float16 vector per Linear input: ~43 KB for Whisper base),
bound to the backbone by its float32 fingerprint, and read without any training code. It is looked
up next to the backbone (``<backbone>/int8_calibration.safetensors``: for a backbone you calibrate
yourself) and then among the calibrations shipped with this package
(``elp/backbones/calibration/<fingerprint>.safetensors``).

Make one from corpus manifests with ``python -m training.int8_calibration`` (a training-side tool:
it reads the project's manifests; the project's shipped file uses the TRAIN split, never a test or
held-out suite).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from elp.backbones.base import Backbone, lengths_to_mask
from elp.errors import BackboneLoadError

CALIBRATION_FILE = "int8_calibration.safetensors"
SHIPPED_DIR = Path(__file__).with_name("calibration")


class Int8Calibration:
    """Per-Linear input maxima ("<layer>.<module name>" -> (in_features,)) and the Linears kept float."""

    def __init__(self, maxima: dict[str, torch.Tensor], keep_float: set[str], fingerprint: str, source: str) -> None:
        self.maxima = {name: value.float() for name, value in maxima.items()}
        self.keep_float = frozenset(keep_float)
        self.fingerprint = fingerprint
        self.source = source

    def save(self, path: Path) -> Path:
        """Write to ``path`` (a folder: the file is named by the fingerprint)."""
        target = path / f"{self.fingerprint}.safetensors" if path.is_dir() else path
        tensors = {name: value.to(torch.float16).contiguous() for name, value in sorted(self.maxima.items())}
        metadata = {"fingerprint": self.fingerprint, "keep_float": json.dumps(sorted(self.keep_float)),
                    "source": self.source}
        save_file(tensors, str(target), metadata=metadata)
        return target

    @classmethod
    def load(cls, path: Path, backbone: Backbone) -> Int8Calibration:
        """Read ``path`` and refuse it when it was made for other backbone weights."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("fingerprint") != backbone.identity.fingerprint:
            raise BackboneLoadError(f"int8 calibration {path} is for backbone {metadata.get('fingerprint')!r}, "
                                    f"not {backbone.identity.fingerprint!r}")
        return cls(load_file(str(path)), set(json.loads(metadata.get("keep_float", "[]"))),
                   metadata["fingerprint"], metadata.get("source", ""))


def find_calibration(backbone: Backbone, backbone_dir: str | Path | None) -> Path | None:
    """The calibration file for ``backbone``: next to it first, then the shipped one, else None."""
    candidates = [Path(backbone_dir) / CALIBRATION_FILE] if backbone_dir else []
    candidates.append(SHIPPED_DIR / f"{backbone.identity.fingerprint}.safetensors")
    return next((path for path in candidates if path.is_file()), None)


def linear_input_maxima(backbone: Backbone, waveforms: list[torch.Tensor], batch_size: int = 8
                        ) -> dict[str, torch.Tensor]:
    """Per input channel, the largest |x| every int8-eligible encoder Linear sees over the real
    frames of ``waveforms`` (the float backbone alone, no adapter set: one calibration serves all)."""
    from elp.model import pad_waveforms

    maxima: dict[str, torch.Tensor] = {}
    real_rows: list[torch.Tensor] = []
    handles = []
    backbone.prepare_for_int8()  # same function in float; makes e.g. WavLM's attention projections visible
    for index, layer in enumerate(backbone.encoder_layers()):
        for name in sorted(backbone.int8_linear_names(layer)):

            def record(_module, inputs, label=f"{index}.{name}"):
                flat = inputs[0].detach().reshape(-1, inputs[0].shape[-1])[real_rows[-1]].abs().float()
                peak = flat.amax(0) if flat.numel() else torch.zeros(flat.shape[-1])
                maxima[label] = torch.maximum(maxima[label], peak) if label in maxima else peak

            handles.append(layer.get_submodule(name).register_forward_pre_hook(record))
    ordered = sorted(waveforms, key=len)
    try:
        with torch.no_grad():
            for start in range(0, len(ordered), batch_size):
                batch, lengths = pad_waveforms(ordered[start:start + batch_size])
                frames, frame_lengths = backbone.front_end(batch.to(backbone.device), lengths.to(backbone.device))
                valid = lengths_to_mask(frame_lengths, frames.shape[1])
                real_rows.append(valid.reshape(-1))
                hidden = backbone.before_layers(frames, valid)
                state = backbone.attention_state(hidden, valid)
                for index, layer in enumerate(backbone.encoder_layers()):
                    hidden = backbone.run_layer(index, layer, hidden, state)
    finally:
        for handle in handles:
            handle.remove()
    return maxima
