"""CTC head and greedy decoding for ASR."""

from __future__ import annotations

import torch
from torch import nn

from elp.heads.config import HeadConfig

BLANK = "<blank>"


class CTCHead(nn.Module):
    """Frame-wise log-probabilities over the vocabulary; index 0 is the CTC blank."""

    uses_prosody = False  # every head takes the same call; only pooled heads may read prosody

    def __init__(self, input_dim: int, vocab_size: int, config: HeadConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(config.dropout)]
        if config.hidden_dim:
            layers += [nn.Linear(input_dim, config.hidden_dim), nn.GELU(), nn.Dropout(config.dropout)]
            input_dim = config.hidden_dim
        layers.append(nn.Linear(input_dim, vocab_size))
        self.net = nn.Sequential(*layers)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor, prosody: torch.Tensor | None = None
    ) -> torch.Tensor:
        return torch.log_softmax(self.net(features).float(), dim=-1)


def ctc_greedy_decode(log_probs: torch.Tensor, length: int, vocab: list[str]) -> str:
    """Best path: argmax per frame, merge repeats, drop blanks (vocab[0])."""
    best = log_probs[:length].argmax(dim=-1).tolist()
    chars: list[str] = []
    previous = -1
    for index in best:
        if index != previous and index != 0:
            chars.append(vocab[index])
        previous = index
    return " ".join("".join(chars).split())
