"""What the multi-adapter model returns at each stage (encoder, per set, per row, answer), and the
padded batch it reads on a CPU. Kept apart from ``elp.model`` so that its types can be imported
without the model's machinery; ``elp.model`` re-exports them."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class EncoderOutput:
    """Per-layer outputs over real frames only: ``hidden_states[0]`` = embeddings, ``[l]`` = layer l."""

    hidden_states: list[torch.Tensor]
    lengths: torch.Tensor
    #: the same lengths on the host, known without reading the device (no GPU synchronisation)
    frame_counts: list[int]


@dataclass
class GroupOutput:
    """One adapter set's rows of a batch and its head's output for them."""

    rows: list[int]
    output: torch.Tensor
    lengths: torch.Tensor
    frame_counts: list[int]  # ``lengths`` on the host
    #: a set with a text branch (``elp.text_intent``), when asked for: its rows' CTC log-probs (b, T, V)
    text_log_probs: torch.Tensor | None = None
    #: a set that rescores its beam (``elp.decoding.rescoring``), when asked for: its rows' last encoder layer
    frames: torch.Tensor | None = None


@dataclass
class RowOutput:
    """One row's head output, on the CPU in float32 (a CTC row cut to its real frames): what the
    model stage returns, before the task's post-processing (``AdapterSet.post_processor``)."""

    task: str
    adapter: str
    output: torch.Tensor


@dataclass
class Prediction:
    """A served answer for one row: the fields its task's post-processor fills (``text``, and ``words`` for an
    ASR set that times them; ``embedding``; ``label`` and ``scores``, and ``slots`` for intents written
    slot_slot_slot)."""

    task: str
    adapter: str
    text: str | None = None
    embedding: torch.Tensor | None = None
    label: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    slots: dict[str, str] | None = None
    #: a transcript's words, their span as fractions (0-1) of the row's audio: (word, start, end, confidence)
    words: list[tuple[str, float, float, float]] | None = None


def pad_waveforms(waveforms: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([int(w.shape[-1]) for w in waveforms], dtype=torch.long)
    batch = torch.zeros(len(waveforms), int(lengths.max()), dtype=torch.float32)
    for row, wave in enumerate(waveforms):
        batch[row, : wave.shape[-1]] = wave.detach().to("cpu", torch.float32).reshape(-1)
    return batch, lengths
