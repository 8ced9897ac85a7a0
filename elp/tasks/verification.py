"""Speaker verification: a pooled, L2-normalised speaker embedding; two clips (or a clip and an
enrolled speaker) are compared by cosine against the set's calibrated threshold."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, create_model

from elp.speech_activity import VoiceGate
from elp.tasks.base import EnrolledReference, ExtraClip, TaskRequest, TaskSpec
from elp.tasks.recipe import TrainingRecipe

if TYPE_CHECKING:
    import torch
    from torch import nn

    from elp.adapter_set import AdapterSet
    from elp.config import AdapterSetConfig
    from elp.heads.config import HeadConfig

#: decimals of the score against an enrolled speaker: enough to read, too coarse to climb
ENROLLED_SCORE_DECIMALS = 2


class Embedder:
    """A row's head output is already the embedding: ``{"embedding": ...}``."""

    offload = False

    def __call__(self, output: torch.Tensor) -> dict[str, Any]:
        return {"embedding": output}


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of two embeddings, clamped to [-1, 1]."""
    import torch

    a, b = a.float().flatten(), b.float().flatten().to(a.device)
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0).clamp(-1.0, 1.0))


def served_threshold(config: AdapterSetConfig, fallbacks: Mapping[str, Any]) -> float:
    """The set's calibrated threshold, else the deployment's (``fallbacks["threshold"]``), else 0.5."""
    return float(fallbacks.get("threshold", 0.5) if config.threshold is None else config.threshold)


class VerificationTask(TaskSpec):
    def num_outputs(self, config: AdapterSetConfig) -> int:
        return config.head.embedding_dim

    def build_head(self, head: HeadConfig, input_dim: int, num_outputs: int, *,
                   labels: list[str] | None = None, slot_names: list[str] | None = None) -> nn.Module:
        from elp.heads.pooled import SpeakerEmbeddingHead

        return SpeakerEmbeddingHead(input_dim, head)

    def build_loss(self, adapter_set: AdapterSet, num_targets: int, label_smoothing: float = 0.0) -> nn.Module:
        """Additive-margin softmax over the training speakers (``num_targets``)."""
        from elp.heads.losses import AMSoftmaxLoss

        return AMSoftmaxLoss(adapter_set.head.embedding_size, num_targets)

    def post_processor(self, adapter_set: AdapterSet) -> Embedder:
        return Embedder()

    @functools.cached_property
    def answer_fields(self) -> type[BaseModel]:
        return create_model(
            "VerifyAnswerFields",
            score=(float, Field(ge=-1.0, le=1.0, description="cosine similarity of the two embeddings")),
            same_speaker=(bool, ...),
            threshold=(float, ...),
            reference_duration_s=(float | None, Field(None, description="duration of `reference` (absent for "
                                                                        "`speaker`)")),
            speaker=(str | None, Field(None, description="enrolled speaker compared against, when `speaker` "
                                                         "was sent")),
        )

    def enrolment_report(self, config: AdapterSetConfig, embeddings: Sequence[torch.Tensor],
                         fallbacks: Mapping[str, Any]) -> dict[str, Any]:
        """Does every clip sound like the others? Each clip's score against the mean of the *other* clips
        (leave-one-out, rounded as enrolled scores are), and the clips under the threshold: a clip of
        another person, or a poor recording, that the stored mean would carry. Nothing for one clip."""
        if len(embeddings) < 2:
            return {}
        import torch

        unit = torch.nn.functional.normalize(torch.stack([e.detach().float().cpu().flatten() for e in embeddings]),
                                             dim=1)
        total = unit.sum(dim=0)
        scores = [cosine(unit[i], total - unit[i]) for i in range(len(unit))]
        threshold = served_threshold(config, fallbacks)
        return {"clip_scores": [round(score, ENROLLED_SCORE_DECIMALS) for score in scores],
                "outlier_clips": [i for i, score in enumerate(scores) if score < threshold]}

    def respond(self, request: TaskRequest) -> dict[str, Any]:
        """Cosine of ``file`` against ``reference`` or the enrolled speaker; the set's calibrated
        threshold, else the deployment's (``fallbacks["threshold"]``)."""
        assert self.enrolled_reference is not None
        embedding = request.rows[0].embedding
        enrolled = request.enrolled is not None
        score = cosine(embedding, request.enrolled if enrolled else request.rows[1].embedding)
        threshold = served_threshold(request.config, request.fallbacks)
        answer: dict[str, Any] = {"score": score, "same_speaker": score >= threshold, "threshold": threshold}
        if enrolled:
            answer["score"] = round(score, ENROLLED_SCORE_DECIMALS)
            answer["speaker"] = request.fields[self.enrolled_reference.field]
        else:
            answer["reference_duration_s"] = round(request.durations_s[1], 4)
        return answer


VERIFICATION = VerificationTask(
    name="verification", route="/verify", default_adapter="verify-default", activation="relu",
    display_name="Speaker verification", headline_field="same_speaker",
    summary="Same speaker? Cosine of the two embeddings against the adapter set's calibrated threshold.",
    description="Against an enrolled ``speaker``: the key, a per-client rate limit and a rounded score.",
    file_description="the clip to check", target_field="speaker", headline_metric="eer", higher_is_better=False,
    metrics=("eer", "min_dcf_0.01", "min_dcf_0.05"), evaluation="trials",
    extra_clips=(ExtraClip("reference", "a clip of the claimed speaker"),),
    enrolled_reference=EnrolledReference("speaker", instead_of="reference",
                                         description="an enrolled speaker id instead of `reference`"),
    speech_gate=VoiceGate(),
    # no speed perturbation: it would turn one voice into another under the same speaker label
    training=TrainingRecipe(paper_rates=(5e-4, 1e-4, 1e-5), fast_rates=(2e-3, 1e-3, 2e-4),
                            augment=(("speed_prob", 0.0),)),
)
