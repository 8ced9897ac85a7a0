"""WavLM's self-attention with its projections called as modules, so int8 can replace them.

``transformers``' ``WavLMAttention`` hands ``q_proj`` / ``k_proj`` / ``v_proj`` / ``out_proj``'s
weights to ``F.multi_head_attention_forward`` as tensors: an int8 Linear swapped in for them is never
called. ``ProjectedWavLMAttention`` computes the same function (float32 results equal within float
tolerance, tested): the four projections as ``module(x)`` calls, the gated relative position bias
(WavLM's own gate and bucketed table, the library's code) plus the key padding mask as the additive
attention mask of ``scaled_dot_product_attention``. It adopts the library module's parameters (same
objects, same names), so fingerprints, calibration labels and adapter hooks are unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers.models.wavlm.modeling_wavlm import WavLMAttention


class ProjectedWavLMAttention(WavLMAttention):
    """``WavLMAttention`` whose projections run as Linear calls and whose softmax runs in SDPA.

    The position bias it returns (and expects back from the previous layer) is (1, H, T, T), shared
    by every row (the library repeats it per row: B x H x T x T floats held through all layers)."""

    @classmethod
    def adopt(cls, attention: WavLMAttention) -> ProjectedWavLMAttention:
        """A copy of ``attention`` holding the very same parameter objects (no weights copied)."""
        with torch.device("meta"):
            projected = cls(attention.embed_dim, attention.num_heads, attention.dropout, attention.num_buckets,
                            attention.max_distance, has_relative_position_bias=hasattr(attention, "rel_attn_embed"))
        projected.load_state_dict(attention.state_dict(keep_vars=True), assign=True)
        return projected.train(attention.training)

    def gated_position_bias(self, hidden_states: torch.Tensor, position_bias: torch.Tensor) -> torch.Tensor:
        """WavLM's gate (from each query frame's own head slice) times the relative bias: (B, H, T, T)."""
        batch, frames, _ = hidden_states.shape
        per_head = hidden_states.reshape(batch, frames, self.num_heads, self.head_dim).transpose(1, 2)
        projected = self.gru_rel_pos_linear(per_head).view(batch, self.num_heads, frames, 2, 4).sum(-1)
        gate_a, gate_b = torch.sigmoid(projected).chunk(2, dim=-1)
        gate = gate_a * (gate_b * self.gru_rel_pos_const - 1.0) + 2.0  # (B, H, T, 1)
        return gate * position_bias.view(-1, self.num_heads, frames, frames)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,
        index: int = 0,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, None, torch.Tensor]:
        batch, frames, _ = hidden_states.shape
        if position_bias is None:  # the first layer holds the bucketed table
            position_bias = self.compute_bias(frames, frames).unsqueeze(0)
        mask = self.gated_position_bias(hidden_states, position_bias)
        if attention_mask is not None:  # as the library: padded keys get -inf, padded queries still attend
            mask = mask.masked_fill(attention_mask.ne(1)[:, None, None, :], float("-inf"))

        def heads(projection: torch.nn.Module) -> torch.Tensor:
            return projection(hidden_states).view(batch, frames, self.num_heads, self.head_dim).transpose(1, 2)

        context = F.scaled_dot_product_attention(
            heads(self.q_proj), heads(self.k_proj), heads(self.v_proj), attn_mask=mask.to(hidden_states.dtype),
            dropout_p=self.dropout if self.training else 0.0,
        )
        output = self.out_proj(context.transpose(1, 2).reshape(batch, frames, self.embed_dim))
        return output, None, position_bias
