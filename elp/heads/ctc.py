"""CTC head and greedy decoding for ASR."""

from __future__ import annotations

import torch
from torch import nn

from elp.backbones.base import lengths_to_mask
from elp.heads.config import HeadConfig

BLANK = "<blank>"


class ContextBlock(nn.Module):
    """Pre-norm convolution module (Conformer's, with LayerNorm): pointwise GLU, depthwise conv over
    time, pointwise back, added to its input. Padded frames are zeroed before the convolution, so a
    clip's answer does not depend on what it is batched with; the last projection starts at zero, so
    a new block starts as the identity and a warm-started head at its old answers."""

    def __init__(self, dim: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.expand = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.project = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, features: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        gated = nn.functional.glu(self.expand(self.norm(features)), dim=-1) * real
        mixed = self.depthwise(gated.transpose(1, 2)).transpose(1, 2)
        return features + self.dropout(self.project(nn.functional.gelu(mixed))) * real


class CTCHead(nn.Module):
    """Frame-wise log-probabilities over the vocabulary; index 0 is the CTC blank. With
    ``context_blocks`` the frames first pass through :class:`ContextBlock` s."""

    uses_prosody = False  # every head takes the same call; only pooled heads may read prosody
    reads_waveform = False

    def __init__(self, input_dim: int, vocab_size: int, config: HeadConfig) -> None:
        super().__init__()
        self.context = nn.ModuleList(
            ContextBlock(input_dim, config.context_kernel, config.dropout) for _ in range(config.context_blocks))
        layers: list[nn.Module] = [nn.Dropout(config.dropout)]
        if config.hidden_dim:
            layers += [nn.Linear(input_dim, config.hidden_dim), nn.GELU(), nn.Dropout(config.dropout)]
            input_dim = config.hidden_dim
        layers.append(nn.Linear(input_dim, vocab_size))
        self.net = nn.Sequential(*layers)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor, prosody: torch.Tensor | None = None
    ) -> torch.Tensor:
        if len(self.context):
            real = lengths_to_mask(lengths.to(features.device), features.shape[1]).unsqueeze(-1).to(features.dtype)
            for block in self.context:
                features = block(features, real)
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
