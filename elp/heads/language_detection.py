"""Each row's spoken language, detected by a Whisper decoder set before it decodes (``DecoderConfig.language_ids``).

Why: a translation set hears any language Whisper knows, and one batch mixes them, so the language token of the
prompt (``<|fr|>`` in ``<|startoftranscript|><|fr|><|translate|><|notimestamps|>``) is chosen per row, as
Whisper's own ``detect_language`` chooses it: the language token scored highest right after the start token
(one decoder step, the same step a label set's language identification takes: ``WhisperDecoderHead.label_logits``).
The step's self-attention cache is kept, so decoding goes on from position 1 without reading the start token again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from elp.heads.seq2seq import WhisperDecoderHead

CrossStates = list[tuple[torch.Tensor, torch.Tensor]]


def detected_prompts(head: WhisperDecoderHead, cross: CrossStates
                     ) -> tuple[torch.Tensor, torch.Tensor, list[list[torch.Tensor]]]:
    """(probabilities (b, L) of the set's language tokens after the start token, the prompts (b, P) with each row's
    most likely language at position 1, the self-attention cache after position 0)."""
    config = head.config
    rows, device = cross[0][0].shape[0], head.silence.device
    cache: list[list[torch.Tensor]] = [[] for _ in head.decoder.layers]
    start = torch.full((rows, 1), config.prompt_ids[0], dtype=torch.long, device=device)
    last = head._step(start, 0, cache, cross)[:, -1]
    languages = head.decoder.embed_tokens.weight[config.language_ids]
    probabilities = (last @ languages.t()).float().softmax(dim=-1)
    prompts = torch.tensor(config.prompt_ids, device=device).repeat(rows, 1)
    prompts[:, 1] = torch.tensor(config.language_ids, device=device)[probabilities.argmax(dim=-1)]
    return probabilities, prompts, cache
