"""The backbone interface: front end -> P-adapter point -> encoder layers -> per-layer outputs.

A family file wraps one ``transformers`` architecture by calling the library's own modules in order;
no modelling code is copied. Adapters are attached around those modules by ``elp.model``.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from elp.errors import BackboneMismatchError

#: "auto": the measured default of the family on the backbone's device; "batched" (one call for the
#: padded batch: ``elp.backbones.front_end``); "per_row" (the reference every batched path is tested against)
FRONT_END_MODES = ("auto", "batched", "per_row")


@dataclass(frozen=True)
class BackboneIdentity:
    """What an adapter set must match: architecture, sizes and a hash of config and weights."""

    model_type: str
    hidden_size: int
    num_layers: int
    fingerprint: str
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneIdentity:
        return cls(
            model_type=str(data["model_type"]),
            hidden_size=int(data["hidden_size"]),
            num_layers=int(data["num_layers"]),
            fingerprint=str(data["fingerprint"]),
            name=str(data.get("name", "")),
        )

    def check_compatible(self, trained_for: BackboneIdentity) -> None:
        """Refuse an adapter set trained for another backbone, saying exactly what differs."""
        diffs = [
            f"{field}: adapter set has {getattr(trained_for, field)!r}, backbone has {getattr(self, field)!r}"
            for field in ("model_type", "hidden_size", "num_layers", "fingerprint")
            if getattr(trained_for, field) != getattr(self, field)
        ]
        if diffs:
            raise BackboneMismatchError(
                f"adapter set was trained for backbone {trained_for.name or trained_for.model_type!r}, "
                f"not {self.name or self.model_type!r}: " + "; ".join(diffs)
            )


def fingerprint_module(config_json: str, module: nn.Module) -> str:
    """sha256 over the config and every weight (name, shape, float32 bytes), order-independent of
    how the checkpoint was sharded; computed at load time before any dtype cast."""
    digest = hashlib.sha256(config_json.encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


class Backbone(nn.Module, ABC):
    """A frozen encoder exposed in the steps the ELP adapters hook into.

    Subclasses call the ``transformers`` modules of one family. ``layer_norm_names`` lists the
    LayerNorm attributes of an encoder layer that E-adapted sets may override with their own copy;
    ``ffn_output_module`` returns the module whose output is the feed-forward result before its
    residual add (the E-adapter insertion point).
    """

    sample_rate: int = 16000
    layer_norm_names: tuple[str, ...] = ()
    #: ``None`` for float weights, else the scheme of elp.backbones.quantize (e.g. ``"int8"``)
    quantization: str | None = None
    #: where the int8 scheme's activation calibration came from (``None``: none used)
    int8_calibration: str | None = None
    #: the folder or hub id ``load_backbone`` read (a float32 copy can be made from it); None if unknown
    source: str | None = None
    #: one of ``FRONT_END_MODES``: "auto" (the family's measured default on its device), "batched"
    #: (one call for the padded batch) or "per_row" (a loop over rows: the reference)
    front_end_mode: str = "auto"

    def __init__(self, model: nn.Module, identity: BackboneIdentity) -> None:
        super().__init__()
        self.model = model
        self.identity = identity
        self.freeze()

    @property
    def hidden_size(self) -> int:
        return self.identity.hidden_size

    @property
    def num_layers(self) -> int:
        return self.identity.num_layers

    def freeze(self) -> None:
        """Frozen and in eval mode: no gradients, no dropout, no LayerDrop."""
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.eval()

    def unfreeze(self) -> None:
        """For the full fine-tuning baseline only; the served backbone is always frozen."""
        for parameter in self.model.parameters():
            parameter.requires_grad_(True)

    def train(self, mode: bool = True) -> Backbone:
        # The backbone never enters training mode: LayerDrop would change the number of layer
        # outputs and dropout would make served answers random.
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def precision(self) -> str:
        """What the encoder computes in: its quantisation scheme (``"int8"``) or its weights' dtype (``"float32"``)."""
        return self.quantization or str(self.dtype).removeprefix("torch.")

    def serving_options(self) -> dict[str, str]:
        """What a task's ``prepare_for_serving`` reads of the encoder beside it (the ASR second pass' ``auto``)."""
        return {"encoder_device": self.device.type, "encoder_precision": self.precision}

    @abstractmethod
    def encoder_layers(self) -> list[nn.Module]:
        """The transformer layers, in order."""

    @abstractmethod
    def ffn_output_module(self, layer: nn.Module) -> nn.Module:
        """The module whose output is the layer's feed-forward result before the residual add."""

    def int8_linear_names(self, layer: nn.Module) -> set[str]:
        """Names of the layer's Linear submodules that int8 quantisation may replace: those the
        layer calls as modules (a family whose code reads a projection's ``.weight`` overrides this)."""
        return {name for name, module in layer.named_modules() if isinstance(module, nn.Linear)}

    def prepare_for_int8(self) -> None:
        """Rewrites that let int8 replace more of the encoder (same function in float); default none."""

    def int8_front_end_convs(self) -> dict[str, nn.Conv1d]:
        """Front-end convolutions (name in ``self.model`` -> module) that int8 may run as windows x int8
        Linear (``elp.backbones.quantize.Int8Conv1d``); default none."""
        return {}

    def layer_norms(self, layer: nn.Module) -> dict[str, nn.LayerNorm]:
        return {name: getattr(layer, name) for name in self.layer_norm_names}

    def batches_front_end(self) -> bool:
        """Whether this forward runs the front end as one batched call (``front_end_mode``)."""
        if self.front_end_mode not in FRONT_END_MODES:
            raise ValueError(f"front_end_mode must be one of {FRONT_END_MODES}, not {self.front_end_mode!r}")
        if self.front_end_mode == "auto":
            return self.front_end_batched_by_default()
        return self.front_end_mode == "batched"

    def front_end_batched_by_default(self) -> bool:
        """On a GPU one batched call beats a launch-bound loop; on a CPU the loop computes no padding."""
        return self.device.type == "cuda"

    @abstractmethod
    def front_end(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded 16 kHz waveforms (B, S) and their lengths -> frames (B, T, d) and frame lengths.

        Frames past a row's length must be zero and no row's frames may depend on the padding."""

    @abstractmethod
    def before_layers(self, frames: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """What the encoder does between the P-adapter point and the first layer (e.g. the
        positional convolution). ``valid`` (B, T) is True on real and pseudo frames."""

    @abstractmethod
    def attention_state(self, frames: torch.Tensor, valid: torch.Tensor) -> dict[str, Any]:
        """Per-forward state the layers need (attention mask in the form the family expects)."""

    @abstractmethod
    def run_layer(self, index: int, layer: nn.Module, hidden: torch.Tensor, state: dict[str, Any]) -> torch.Tensor:
        """Run one encoder layer of the library on ``hidden``."""

    def after_layers(self, last_hidden: torch.Tensor) -> torch.Tensor:
        """Final LayerNorm of pre-LN encoders; identity for post-LN ones."""
        return last_hidden

    @property
    def max_samples(self) -> int | None:
        """The longest clip the encoder takes (Whisper: its 30 s window); None = no fixed limit."""
        return None

    def frame_count(self, num_samples: int) -> int:
        """Frames the front end yields for a clip of ``num_samples`` samples."""
        return int(self.front_end_lengths(torch.tensor([num_samples]))[0])

    @abstractmethod
    def front_end_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frame lengths for sample lengths, without running the front end."""


def first_tensor(output: Any) -> torch.Tensor:
    """transformers' layers return a tensor or a tuple depending on version and family."""
    return output[0] if isinstance(output, tuple) else output


def lengths_to_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    steps = torch.arange(max_length, device=lengths.device)
    return steps[None, :] < lengths[:, None]
