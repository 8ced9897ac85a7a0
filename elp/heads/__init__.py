"""Task heads: CTC for ASR, pooled speaker embedding, pooled classifiers for emotion and intent."""

from elp.heads.config import TASKS, HeadConfig
from elp.heads.ctc import CTCHead, ctc_greedy_decode
from elp.heads.losses import AMSoftmaxLoss
from elp.heads.pooled import ClassifierHead, SpeakerEmbeddingHead, masked_pool

__all__ = [
    "TASKS",
    "AMSoftmaxLoss",
    "CTCHead",
    "ClassifierHead",
    "HeadConfig",
    "SpeakerEmbeddingHead",
    "build_head",
    "ctc_greedy_decode",
    "masked_pool",
]


def build_head(
    config: HeadConfig, task: str, input_dim: int, num_outputs: int,
    labels: list[str] | None = None, slot_names: list[str] | None = None,
):
    """The head for a task; ``num_outputs`` is the vocabulary size (ASR) or the class count."""
    if task == "asr":
        return CTCHead(input_dim, num_outputs, config)
    if task == "verification":
        return SpeakerEmbeddingHead(input_dim, config)
    return ClassifierHead(input_dim, num_outputs, config, labels=labels, slot_names=slot_names)
