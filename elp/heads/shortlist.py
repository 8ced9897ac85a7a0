"""The greedy token of a large vocabulary projection at int8 cost, provably the float32 one.

A greedy decoder needs only the argmax of ``x @ W.T`` (Whisper base: 51,865 x 512, 106 MB of float32
read per token, ~40% of a token step on a CPU). int8 reads a quarter of that, but moves logits enough to
change ~10% of transcripts (``benchmarks/decoder_int8.py``). Here int8 only *shortlists*: with the
dequantised weight ``W~`` and input ``x~`` the kernel computes ``x~ W~_i`` exactly (int32 sums), and

    |x W_i - x~ W~_i| <= max|x - x~| * ||W~_i||_1 + min(||x||_1 * max|W_i - W~_i|, ||x||_2 ||W_i - W~_i||_2)
                         (+ float rounding)

so a token whose int8 logit plus its bound falls below the best int8 logit minus its bound cannot be
the float argmax. The few that can are rescored in float32 from their rows of ``W``; the argmax over
the rescored tokens is the float argmax. Should the shortlist grow past ``max_candidates`` (bounds too
loose for a row), that row is computed in full float32. Tokens the caller blocks are never candidates.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from elp.backbones.quantize import RowwiseInt8Linear

#: slack for the float32 sums themselves (relative to ||x||_1 * max|W_i|; float32 eps is 1.2e-7)
FLOAT_SLACK = 1e-5


class Int8Shortlist(nn.Module):
    """``argmax`` of ``x @ weight.T`` over allowed tokens, equal to float32's, at mostly int8 cost.

    ``exact_channels``: input channels computed in float32 for every token (their ``weight`` columns
    kept as a small float copy), left out of the int8 call: a few outlying channels otherwise set the
    one activation scale of the call and widen every bound (Whisper base's final LayerNorm output has
    a channel at ~300 where the median channel peaks at ~22). Which channels only changes speed, never
    the answer. The float ``weight`` itself is passed to each call, not kept: it is the decoder's tied
    token embedding."""

    def __init__(self, weight: torch.Tensor, full_range: bool, exact_channels: torch.Tensor | None = None,
                 max_candidates: int | None = None) -> None:
        super().__init__()
        weight = weight.detach().float()
        vocabulary, width = weight.shape
        self.full_range = full_range
        self.max_candidates = max_candidates if max_candidates is not None else vocabulary // 8
        exact = torch.zeros(width, dtype=torch.bool)
        if exact_channels is not None:
            exact[exact_channels] = True
        self.register_buffer("exact_channels", exact.nonzero().flatten(), persistent=False)
        self.register_buffer("approximated", (~exact).float(), persistent=False)
        self.register_buffer("exact_columns", weight[:, exact].contiguous(), persistent=False)
        self.int8 = RowwiseInt8Linear(weight * self.approximated, None, full_range)
        dequantised = self.int8.linear.quantized.weight().dequantize().float() * self.approximated
        rounding = (weight * self.approximated - dequantised).abs()
        self.register_buffer("row_l1", dequantised.abs().sum(1), persistent=False)
        self.register_buffer("row_rounding", rounding.amax(1), persistent=False)
        self.register_buffer("row_rounding_l2", rounding.pow(2).sum(1).sqrt(), persistent=False)
        self.register_buffer("row_max", weight.abs().amax(1), persistent=False)
        self.rows = 0  # rows decoded, and of them those that fell back to the full float32 projection
        self.full_rows = 0

    def _input_rounding(self, inputs: torch.Tensor) -> torch.Tensor:
        """Per row, the largest |x - x~| of fbgemm's dynamic activation quantisation: one affine uint8
        scale over [min(x, 0), max(x, 0)] per call (7 bits without ``full_range``). One full step
        bounds it with the zero point's rounding and the top value's clamp included."""
        levels = 255.0 if self.full_range else 127.0
        span = inputs.amax(1).clamp_min(0) - inputs.amin(1).clamp_max(0)
        return span / levels

    def approximate(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, V) logits from int8 (plus the exact channels in float32) and a bound on each one's error."""
        rest = inputs * self.approximated
        approx = self.int8(rest).float() + inputs[:, self.exact_channels] @ self.exact_columns.t()
        weight_rounding = torch.minimum(rest.abs().sum(1, keepdim=True) * self.row_rounding,
                                        rest.norm(dim=1, keepdim=True) * self.row_rounding_l2)
        bound = (self._input_rounding(rest)[:, None] * self.row_l1 + weight_rounding
                 + FLOAT_SLACK * inputs.abs().sum(1, keepdim=True) * self.row_max)
        return approx, bound

    def near_exact_logits(self, inputs: torch.Tensor, weight: torch.Tensor, margin: float,
                          exact_tokens: torch.Tensor) -> torch.Tensor:
        """(b, V) logits of ``inputs`` (b, d) under ``weight`` (V, d) for a log-softmax: the tokens whose int8 logit
        comes within ``margin`` nats of some row's best, and ``exact_tokens``, computed in float32 from their rows of
        ``weight`` for every row; the rest from one batched int8 call. A log-softmax' normaliser is dominated by its
        top tokens, so the rest's int8 errors move it by their share of the mass: at a margin of 8 nats by 0.0009
        nats median and 0.022 at most, over the 821 positions of 30 Kokoro validation clips' n-bests (the
        asr-default card). Unlike ``forward`` the rows share one activation scale, so a row's values depend on its
        batch-mates (the caller's rows are one clip's)."""
        logits = self.int8.linear(inputs * self.approximated).float()
        logits += inputs[:, self.exact_channels] @ self.exact_columns.t()
        near = (logits >= logits.amax(1, keepdim=True) - margin).any(0)
        near[exact_tokens] = True
        ids = near.nonzero().flatten()
        logits[:, ids] = (inputs @ weight.index_select(0, ids).t()).float()
        return logits

    def forward(self, inputs: torch.Tensor, weight: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        """Token ids (b,) of ``inputs`` (b, d) under ``weight`` (V, d), the one given at construction;
        ``blocked`` (V,) bool: never chosen."""
        best = torch.empty(inputs.shape[0], dtype=torch.long, device=inputs.device)
        for row, token in enumerate(self.picks(inputs, weight, blocked)):
            best[row] = token
        return best

    def picks(self, inputs: torch.Tensor, weight: torch.Tensor, blocked: torch.Tensor) -> Iterator[int]:
        """The rows' tokens one by one, as :meth:`forward` picks them: the int8 logits of every row at
        once, each row's float32 rescoring only when the caller asks for it (a drafted pass stops at the first
        token that differs from its draft; the rows after it are never rescored)."""
        approx, bound = self.approximate(inputs)
        approx = approx.masked_fill(blocked, float("-inf"))
        floor = (approx - bound).amax(1, keepdim=True)
        candidates = (approx + bound) >= floor
        for row in range(inputs.shape[0]):
            self.rows += 1
            ids = candidates[row].nonzero().flatten()
            if ids.numel() > self.max_candidates:
                self.full_rows += 1
                yield int((inputs[row] @ weight.t()).masked_fill(blocked, float("-inf")).argmax())
                continue
            exact = weight.index_select(0, ids) @ inputs[row]
            yield int(ids[exact.argmax()])
