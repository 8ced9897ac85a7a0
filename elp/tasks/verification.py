"""Speaker verification: a pooled, L2-normalised speaker embedding; two clips (or a clip and an
enrolled speaker) are compared by cosine against the set's calibrated threshold."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, create_model

from elp.errors import ConfigError
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


def mean_unit_embedding(embeddings: Sequence[torch.Tensor]) -> torch.Tensor:
    """The L2-normalised mean of the L2-normalised clip embeddings: an enrolled speaker, as every speaker store keeps
    it and every evaluation of enrolments builds it."""
    import torch

    unit = [torch.nn.functional.normalize(e.detach().float().cpu().flatten(), dim=0) for e in embeddings]
    return torch.nn.functional.normalize(torch.stack(unit).mean(dim=0), dim=0).contiguous()


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


def served_threshold(config: AdapterSetConfig, fallbacks: Mapping[str, Any], duration_s: float | None = None) -> float:
    """The set's calibrated threshold for a pair whose shorter clip lasts ``duration_s`` (its duration table,
    else its single threshold), else the deployment's (``fallbacks["threshold"]``), else 0.5."""
    if config.duration_thresholds and duration_s is not None:
        return float(next(threshold for start, threshold in reversed(config.duration_thresholds)
                          if duration_s >= start))
    return float(fallbacks.get("threshold", 0.5) if config.threshold is None else config.threshold)


def check_duration_thresholds(table: Sequence[Sequence[float]] | None) -> None:
    """A duration table is ``[[from_s, threshold], ...]``: the first from 0, ascending, thresholds cosines."""
    if table is None:
        return
    if not table or any(len(entry) != 2 for entry in table):
        raise ConfigError("duration_thresholds must be a non-empty list of [from_s, threshold] pairs")
    starts = [float(start) for start, _ in table]
    if starts[0] != 0.0 or any(b <= a for a, b in zip(starts, starts[1:], strict=False)):
        raise ConfigError(f"duration_thresholds must start at 0 s and ascend; got starts {starts}")
    if any(not -1.0 <= float(threshold) <= 1.0 for _, threshold in table):
        raise ConfigError("duration_thresholds' thresholds are cosines, within [-1, 1]")


class VerificationTask(TaskSpec):
    def validate(self, config: AdapterSetConfig) -> None:
        super().validate(config)
        check_duration_thresholds(config.duration_thresholds)

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
            threshold=(float, Field(..., description="the threshold applied: the set's for the shorter clip's "
                                                      "duration when it carries a duration table")),
            reference_duration_s=(float | None, Field(None, description="duration of `reference` (absent for "
                                                                        "`speaker`)")),
            speaker=(str | None, Field(None, description="enrolled speaker compared against, when `speaker` "
                                                         "was sent")),
        )

    def enrolment_report(self, config: AdapterSetConfig, embeddings: Sequence[torch.Tensor],
                         fallbacks: Mapping[str, Any], durations_s: Sequence[float] | None = None) -> dict[str, Any]:
        """Does every clip sound like the others? Each clip's score against the mean of the *other* clips
        (leave-one-out, rounded as enrolled scores are), and the clips under the threshold (at the clip's own
        duration, when known): a clip of another person, or a poor recording, that the stored mean would
        carry. Nothing for one clip."""
        if len(embeddings) < 2:
            return {}
        import torch

        unit = torch.nn.functional.normalize(torch.stack([e.detach().float().cpu().flatten() for e in embeddings]),
                                             dim=1)
        total = unit.sum(dim=0)
        scores = [cosine(unit[i], total - unit[i]) for i in range(len(unit))]
        durations = list(durations_s) if durations_s is not None else [None] * len(scores)
        return {"clip_scores": [round(score, ENROLLED_SCORE_DECIMALS) for score in scores],
                "outlier_clips": [i for i, (score, seconds) in enumerate(zip(scores, durations, strict=True))
                                  if score < served_threshold(config, fallbacks, seconds)]}

    def respond(self, request: TaskRequest) -> dict[str, Any]:
        """Cosine of ``file`` against ``reference`` or the enrolled speaker; the set's calibrated threshold
        at the shorter side's duration (an enrolment's: its clips' total), else the deployment's
        (``fallbacks["threshold"]``)."""
        assert self.enrolled_reference is not None
        embedding = request.rows[0].embedding
        enrolled = request.enrolled is not None
        score = cosine(embedding, request.enrolled if enrolled else request.rows[1].embedding)
        other_s = request.enrolled_duration_s if enrolled else request.durations_s[1]
        shorter_s = min(request.durations_s[0], other_s) if other_s else request.durations_s[0]
        threshold = served_threshold(request.config, request.fallbacks, shorter_s)
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
