"""wav2vec 2.0, HuBERT (and ContentVec) and WavLM (and WavLM+): CNN feature encoder, feature
projection, positional convolution, post-LN ("base") or pre-LN ("stable layer norm", "large") layers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask

from elp.backbones.base import Backbone, BackboneIdentity, first_tensor, lengths_to_mask
from elp.backbones.front_end import batched_group_norm_cnn, padded_cnn
from elp.backbones.quantize import Int8Conv1d
from elp.backbones.wavlm_attention import ProjectedWavLMAttention

#: WavLM attention's projections, int8-eligible once they are module calls (``ProjectedWavLMAttention``)
WAVLM_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


class Wav2Vec2FamilyBackbone(Backbone):
    """Drives ``Wav2Vec2Model`` / ``HubertModel`` / ``WavLMModel`` step by step."""

    layer_norm_names = ("layer_norm", "final_layer_norm")

    def __init__(self, model: nn.Module, identity: BackboneIdentity, normalize_waveform: bool) -> None:
        super().__init__(model, identity)
        self.config = model.config
        self.normalize_waveform = normalize_waveform
        self.is_stable_layer_norm = bool(getattr(self.config, "do_stable_layer_norm", False))
        # GroupNorm in the first conv layer normalises over time: padding would leak into every
        # frame, so those models run their CNN one clip at a time, or batched with that norm's
        # statistics masked to each row (``front_end_mode``; batched by default on a GPU).
        self.cnn_needs_unpadded = getattr(self.config, "feat_extract_norm", "layer") == "group"
        self.is_wavlm = identity.model_type == "wavlm"

    def encoder_layers(self) -> list[nn.Module]:
        return list(self.model.encoder.layers)

    def ffn_output_module(self, layer: nn.Module) -> nn.Module:
        return layer.feed_forward

    def int8_linear_names(self, layer: nn.Module) -> set[str]:
        # The library's WavLM attention hands its projections' weights to F.multi_head_attention_forward
        # as tensors: they can run in int8 once ``prepare_for_int8`` has made them module calls. Its
        # gate (head_dim -> 8 per head, into a sigmoid) is too small to gain from int8.
        names = super().int8_linear_names(layer)
        if not self.is_wavlm:
            return names
        projected = isinstance(layer.attention, ProjectedWavLMAttention)
        return {name for name in names if not name.startswith("attention.")
                or (projected and name.rsplit(".", 1)[-1] in WAVLM_PROJECTIONS)}

    def prepare_for_int8(self) -> None:
        if self.is_wavlm:
            for layer in self.encoder_layers():
                if not isinstance(layer.attention, ProjectedWavLMAttention):
                    layer.attention = ProjectedWavLMAttention.adopt(layer.attention)

    def int8_front_end_convs(self) -> dict[str, nn.Conv1d]:
        # The first layer (1 -> C, kernel 10: ~1% of the CNN's multiply-adds) and every norm stay float.
        layers = self.model.feature_extractor.conv_layers
        return {f"feature_extractor.conv_layers.{index}.conv": layer.conv for index, layer in enumerate(layers)
                if isinstance(layer.conv, nn.Conv1d) and layer.conv.in_channels > 1}

    def front_end_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.model._get_feat_extract_output_lengths(lengths).long()

    def _normalize(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not self.normalize_waveform:
            return waveforms
        valid = lengths_to_mask(lengths, waveforms.shape[1]).to(waveforms.dtype)
        count = valid.sum(dim=1, keepdim=True).clamp(min=1.0)
        mean = (waveforms * valid).sum(dim=1, keepdim=True) / count
        var = (((waveforms - mean) ** 2) * valid).sum(dim=1, keepdim=True) / count
        return (waveforms - mean) / torch.sqrt(var + 1e-7) * valid

    def front_end(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        waveforms = self._normalize(waveforms.to(self.dtype), lengths)
        frame_lengths = self.front_end_lengths(lengths)
        if not self.cnn_needs_unpadded:
            extractor = self.model.feature_extractor
            quantized = any(isinstance(layer.conv, Int8Conv1d) for layer in extractor.conv_layers)
            features = padded_cnn(extractor, waveforms, lengths) if quantized else extractor(waveforms)
        elif self.batches_front_end():
            features = batched_group_norm_cnn(self.model.feature_extractor, waveforms, lengths)
        else:
            max_frames = int(frame_lengths.max())
            rows = []
            for row, length in enumerate(lengths.tolist()):
                feats = self.model.feature_extractor(waveforms[row : row + 1, :length])
                rows.append(nn.functional.pad(feats, (0, max_frames - feats.shape[-1])))
            features = torch.cat(rows, dim=0)
        frames = first_tensor(self.model.feature_projection(features.transpose(1, 2)))
        frames = frames[:, : int(frame_lengths.max())]
        valid = lengths_to_mask(frame_lengths, frames.shape[1])
        return frames * valid.unsqueeze(-1).to(frames.dtype), frame_lengths

    def before_layers(self, frames: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        encoder = self.model.encoder
        frames = frames * valid.unsqueeze(-1).to(frames.dtype)
        hidden = frames + encoder.pos_conv_embed(frames)
        if not self.is_stable_layer_norm:
            hidden = encoder.layer_norm(hidden)
        return hidden

    def attention_state(self, frames: torch.Tensor, valid: torch.Tensor) -> dict[str, Any]:
        if self.is_wavlm:
            # WavLM's attention takes the 2-D mask and turns it into a key padding mask itself; with
            # no padding, no mask: merging an all-valid key mask into the position bias costs time.
            return {"attention_mask": None if bool(valid.all()) else valid.long(), "position_bias": None}
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=frames, attention_mask=valid)
        return {"attention_mask": mask}

    def run_layer(self, index: int, layer: nn.Module, hidden: torch.Tensor, state: dict[str, Any]) -> torch.Tensor:
        if self.is_wavlm:
            if hidden.shape[0] > 1 and not isinstance(layer.attention, ProjectedWavLMAttention):
                # WavLM's attention works time-major (T, B, E); handing it a time-major layout lets its
                # projections run as one matmul instead of a batched one (measured 1.55 s -> 1.21 s for
                # two 5 s rows of WavLM Base on 2 CPU cores). Values are unchanged.
                hidden = hidden.transpose(0, 1).contiguous().transpose(0, 1)
            hidden, state["position_bias"] = layer(
                hidden, attention_mask=state["attention_mask"], position_bias=state["position_bias"], index=index
            )
            return hidden
        return first_tensor(layer(hidden, attention_mask=state["attention_mask"]))

    def after_layers(self, last_hidden: torch.Tensor) -> torch.Tensor:
        if self.is_stable_layer_norm:
            return self.model.encoder.layer_norm(last_hidden)
        return last_hidden
