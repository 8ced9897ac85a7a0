"""A second classifier beside a decoder label set: a weighted layer sum and a pooled head (``CompanionConfig``).

The decoder's label logits and this head's logits are fused as log-probabilities, so the answer is the
product of the two distributions with the companion's raised to ``weight``. It reads the frames of the clip
itself: a decoder set's rows end in trailing zeros (``elp.decoder_rows``), which the classifier it was copied
from never saw.
"""

from __future__ import annotations

import torch
from torch import nn

from elp.heads.config import CompanionConfig
from elp.tuners.l_adapter import WeightedLayerSum


class CompanionClassifier(nn.Module):
    def __init__(self, config: CompanionConfig, hidden: int, num_labels: int, build_head) -> None:
        """``build_head(head_config, input_dim, num_labels)``: the task's own head builder."""
        super().__init__()
        self.weight = config.weight
        self.featurizer = WeightedLayerSum(config.weighted_sum_layers, hidden, normalize=True)
        self.head = build_head(config.head, self.featurizer.output_dim, num_labels)

    def forward(self, states: list[torch.Tensor], clip_frames: torch.Tensor) -> torch.Tensor:
        """(rows, labels) logits from the encoder's layer outputs, each row's first ``clip_frames`` frames."""
        width = int(clip_frames.max())
        return self.head(self.featurizer([s[:, :width] for s in states]), clip_frames).float()

    def fuse(self, label_logits: torch.Tensor, companion_logits: torch.Tensor) -> torch.Tensor:
        return fused_log_probs(label_logits, companion_logits, self.weight)


def fused_log_probs(label_logits: torch.Tensor, companion_logits: torch.Tensor, weight: float) -> torch.Tensor:
    """What a set with a companion answers: ``log_softmax(labels) + weight * log_softmax(companion)`` (also what
    ``training.companion_weight`` scores each weight of its grid with)."""
    return label_logits.float().log_softmax(-1) + weight * companion_logits.float().log_softmax(-1)
