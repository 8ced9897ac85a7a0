"""Task heads: CTC for ASR, pooled speaker embedding, pooled classifiers for emotion and intent.

Which head a task uses is the task's own choice (``elp.tasks``: ``TaskSpec.build_head``)."""

from elp.heads.config import HeadConfig
from elp.heads.ctc import CTCHead, ctc_greedy_decode
from elp.heads.losses import AMSoftmaxLoss
from elp.heads.pooled import ClassifierHead, SpeakerEmbeddingHead, masked_pool

__all__ = [
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
    """The head of the registered ``task``; ``num_outputs`` is the vocabulary size (ASR), the embedding
    size (verification) or the class count."""
    from elp.tasks import get_task

    return get_task(task).build_head(config, input_dim, num_outputs, labels=labels, slot_names=slot_names)
