"""Word times of a decoder's transcript from its cross-attention (decoder sets such as ``asr-whisper``).

Why: a CTC set has per-frame posteriors to align its text on (``elp.decoding.alignment``); a sequence decoder
has none, but a few of Whisper's cross-attention heads follow the speech as they write it (the checkpoint's
``alignment_heads``). Each token's attention over the clip's frames (``elp.heads.word_timing`` blends the
positions that choose and that read it) is standardised per frame across tokens (so a frame belongs to the
token that looks at it most), smoothed along time, averaged over the heads, and split into one run of frames
per token in order by dynamic programming. A word spans its tokens' runs. Cost: one teacher-forced decoder
pass over the answered tokens and a pass over the frames with numpy over the tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: frames of the median filter along time (20 ms frames): smooths one head's flicker without moving edges much
MEDIAN_WIDTH = 7


def attention_scores(weights: torch.Tensor) -> np.ndarray:
    """Attention probabilities ``(heads, tokens, frames)`` over the clip's frames -> ``(tokens, frames)``
    scores: each head standardised per frame across the tokens (when there are several), median-filtered
    along the frames, then averaged over the heads."""
    weights = weights.float()
    if weights.shape[1] > 1:
        mean = weights.mean(dim=1, keepdim=True)
        spread = weights.std(dim=1, keepdim=True).clamp_min(1e-6)
        weights = (weights - mean) / spread
    if weights.shape[-1] > MEDIAN_WIDTH:
        half = MEDIAN_WIDTH // 2
        padded = torch.nn.functional.pad(weights, (half, half), mode="replicate")
        weights = padded.unfold(-1, MEDIAN_WIDTH, 1).median(dim=-1).values
    return weights.mean(dim=0).cpu().numpy().astype(np.float64)


def monotonic_starts(scores: np.ndarray) -> np.ndarray | None:
    """The first frame of each token: the split of the frames into consecutive non-empty runs, one per token
    in order, whose summed ``scores`` ``(tokens, frames)`` are highest. None with fewer frames than tokens."""
    tokens, frames = scores.shape
    if tokens == 0 or frames < tokens:
        return None
    best = np.full(tokens, -np.inf)
    best[0] = scores[0, 0]
    entered = np.zeros((frames, tokens), dtype=bool)  # frame t opened token i's run (came from token i - 1)
    for t in range(1, frames):
        advance = np.concatenate(([-np.inf], best[:-1]))
        entered[t] = advance > best
        best = np.maximum(best, advance) + scores[:, t]
    starts = np.zeros(tokens, dtype=np.int64)
    token = tokens - 1
    for t in range(frames - 1, 0, -1):
        if token == 0:
            break
        if entered[t, token]:
            starts[token] = t
            token -= 1
    return starts


def token_spans(weights: torch.Tensor) -> list[tuple[int, int]] | None:
    """``(first_frame, end_frame)`` (end exclusive) of each token from the alignment heads' attention
    ``(heads, tokens, frames)`` over the clip; None when the clip has fewer frames than tokens."""
    scores = attention_scores(weights)
    starts = monotonic_starts(scores)
    if starts is None:
        return None
    ends = [*starts[1:].tolist(), scores.shape[1]]
    return list(zip(starts.tolist(), ends, strict=True))


def word_groups(opens_word: Sequence[bool]) -> list[list[int]]:
    """Token indices grouped into words: a token whose text starts with a space (``opens_word``), or the
    first token, opens one; the others continue the word before. Punctuation stays with its word."""
    groups: list[list[int]] = []
    for index, opens in enumerate(opens_word):
        if not groups or opens:
            groups.append([index])
        else:
            groups[-1].append(index)
    return groups
