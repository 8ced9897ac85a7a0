"""A second pass over a CTC set's beam: the checkpoint's own pretrained decoder rescoring its n-best.

Why: on real people the CTC set's word errors are whole-word substitutions by other real words ("and" for "then",
"tree" for "treat"): the acoustics and the word LM's choices, not spelling. Whisper's decoder was trained on
680,000 hours of real speech and reads the whole clip; asked only to *score* the beam's few best transcripts
(teacher-forced, one batched pass, no autoregressive decoding) it picks among them at a fraction of its own
decoding cost. It reads the set's own last encoder layer (the E-adapters' output), so no second encoder pass.

The decoder's weights and BPE tokenizer are not stored in the set: they come from the checkpoint folder the
backbone was loaded from (``Backbone.source``), built once per folder and shared (:func:`checkpoint_rescorer`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from elp.decoding.beam import Hypothesis
from elp.decoding.config import RescoringConfig
from elp.errors import ConfigError

if TYPE_CHECKING:
    from elp.heads.seq2seq import WhisperDecoderHead


class DecoderRescorer:
    """``best(frames, hypotheses)``: the hypothesis with the highest ``score + weight * log p_decoder + token_bonus *
    tokens``, the decoder teacher-forced on each hypothesis' tokens and its end of text over ``frames`` (the set's
    last encoder layer, (T, d))."""

    def __init__(self, head: WhisperDecoderHead, encode: Callable[[str], list[int]]) -> None:
        self.head = head.eval()
        self.encode = encode
        self.prompt = list(head.config.prompt_ids)
        self.eot = head.config.eot_id

    def token_ids(self, text: str) -> list[int]:
        """A transcript's tokens after the prompt: its BPE tokens (a leading space, as Whisper writes) and the end."""
        return [*(self.encode(" " + text) if text else []), self.eot]

    @torch.inference_mode()
    def log_probs(self, frames: torch.Tensor, texts: Sequence[str]) -> list[float]:
        """log p_decoder(tokens, end of text | frames) of each text: one teacher-forced pass over all of them, and
        one vocabulary projection (51,865 outputs: most of the cost, reading its weights once) over only the
        positions that predict a text's own tokens."""
        head = self.head
        sequences = [self.prompt + self.token_ids(text) for text in texts]
        width = max(len(sequence) for sequence in sequences) - 1  # the last token predicts nothing
        device = head.silence.device
        ids = torch.tensor([sequence[:-1] + [self.eot] * (width + 1 - len(sequence)) for sequence in sequences],
                           device=device)
        features = frames.to(device, head.silence.dtype).unsqueeze(0)
        cross = [(keys.expand(len(texts), -1, -1, -1), values.expand(len(texts), -1, -1, -1))
                 for keys, values in head._cross_states(features, torch.tensor([frames.shape[0]]))]
        first = len(self.prompt) - 1  # the position that predicts the first token after the prompt
        hidden = head._step(ids, 0, [[] for _ in head.decoder.layers], cross, keep=width - first)
        counts = [len(sequence) - len(self.prompt) for sequence in sequences]
        row = torch.tensor([row for row, count in enumerate(counts) for _ in range(count)], dtype=torch.long)
        position = torch.tensor([position for count in counts for position in range(count)], dtype=torch.long)
        target = torch.tensor([token for sequence in sequences for token in sequence[len(self.prompt):]],
                              dtype=torch.long, device=device)
        logits = (hidden[row, position] @ head.decoder.embed_tokens.weight.t()).float()
        chosen = F.log_softmax(logits, dim=-1).gather(1, target[:, None]).squeeze(1)
        return [float(part.sum()) for part in torch.split(chosen, counts)]

    def best(self, frames: torch.Tensor, hypotheses: Sequence[Hypothesis], config: RescoringConfig) -> Hypothesis:
        """The rescored best of the first ``config.nbest`` ``hypotheses`` (best first from the search)."""
        limit = self.head.config.max_target_positions - len(self.prompt)
        kept = [h for h in hypotheses[: config.nbest] if len(self.token_ids(h.text)) <= limit]
        if len(kept) < 2:  # nothing to choose, or transcripts longer than the decoder reads: the search's answer
            return hypotheses[0]
        counts = [len(self.token_ids(h.text)) for h in kept]
        return kept[rescored_index(kept, self.log_probs(frames, [h.text for h in kept]), counts, config)]


def rescored_index(hypotheses: Sequence[Hypothesis], decoder_log_probs: Sequence[float], token_counts: Sequence[int],
                   config: RescoringConfig) -> int:
    """Which of the first ``config.nbest`` hypotheses wins: the highest ``score + weight * decoder log-probability +
    token_bonus * tokens``, the earliest of equals (the search's order). Serving and the tuning tool
    (``training.rescoring``) both choose here."""
    kept = range(min(config.nbest, len(hypotheses)))
    totals = [hypotheses[i].score + config.weight * decoder_log_probs[i] + config.token_bonus * token_counts[i]
              for i in kept]
    return max(kept, key=totals.__getitem__)


@functools.lru_cache(maxsize=2)
def checkpoint_rescorer(source: str) -> DecoderRescorer:
    """The rescorer of a Whisper checkpoint folder (or hub id): its decoder (``elp.convert.whisper_decoder_set``,
    float32) and its BPE tokenizer. Built once per folder and shared by every set and thread that rescores."""
    from transformers import AutoTokenizer

    from elp.convert.whisper_decoder_set import convert

    try:
        decoder_set = convert(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"rescoring needs the backbone checkpoint's decoder and tokenizer: {exc}") from exc
    return DecoderRescorer(decoder_set.head, functools.partial(tokenizer.encode, add_special_tokens=False))
