"""Greedy decoding of one row with drafted tokens checked in one decoder pass (speculative decoding).

Each pass feeds the last kept token and up to ``draft_max_tokens`` drafted ones; the decoder's greedy
pick at every position is read, the picks are kept up to and including the first that differs from
the draft (or ends the row), and the key/value cache is cut back to the kept tokens. So the output is
greedy decoding's token for token (up to float rounding between a one-token and a several-token pass,
which the tests and the set's card bound), and every pass keeps at least one token: a wrong draft
costs the extra positions of one pass, never an extra pass.

Why per row: rows of one call keep different numbers of tokens a pass, so their caches would part;
at the few rows of a CPU call the weights read once a pass for one row cost less than greedy's one
read a token for all rows (the set's ``draft_max_rows`` says up to how many rows; measured in its card).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import torch

from elp.heads.draft import DraftProposer

if TYPE_CHECKING:
    from elp.heads.seq2seq import WhisperDecoderHead


def decode_row(head: WhisperDecoderHead, cross: list[tuple[torch.Tensor, torch.Tensor]], limit: int,
               proposer: DraftProposer) -> tuple[list[int], int]:
    """One row's greedy tokens (without the end token) and the decoder passes they took."""
    config = head.config
    blocked, first_blocked = (mask.to(cross[0][0].device) for mask in head._blocked)
    cache: list[list[torch.Tensor]] = [[] for _ in head.decoder.layers]
    feed, position, emitted, passes = list(config.prompt_ids), 0, [], 0
    while len(emitted) < limit:
        draft = proposer.propose(emitted, min(config.draft_max_tokens, limit - len(emitted) - 1))
        hidden = head._step(torch.tensor([feed + draft], device=blocked.device), position, cache, cross,
                            keep=len(draft) + 1)[0]
        passes += 1
        picks = (itertools.chain(head._picks(hidden[:1], first_blocked), head._picks(hidden[1:], blocked))
                 if not emitted else head._picks(hidden, blocked))
        kept: list[int] = []
        for index, token in enumerate(picks):
            kept.append(token)
            if token == config.eot_id or len(emitted) + len(kept) >= limit \
                    or index >= len(draft) or token != draft[index]:
                break
        position += len(feed) + len(kept) - 1  # the last kept token is fed next pass
        for layer_cache in cache:
            layer_cache[0], layer_cache[1] = layer_cache[0][:, :, :position], layer_cache[1][:, :, :position]
        if kept[-1] == config.eot_id:
            emitted += kept[:-1]
            break
        emitted += kept
        feed = [kept[-1]]
    return emitted[:limit], passes
