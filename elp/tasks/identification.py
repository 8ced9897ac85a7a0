"""Speaker identification: which enrolled speaker is this, if any (``POST /identify``, open-set 1:N).

It answers with speaker-verification sets (:attr:`TaskSpec.answers_with`): the clip is embedded as ``/verify``
embeds one, compared by cosine with every speaker enrolled for the set's version (``POST /speakers/{id}``), and
the best one is named when its score reaches the set's verification threshold at the shorter of the clip and
that speaker's enrolment, moved by an offset chosen on validation voices (docs/results/identification.md).
Nobody at the threshold: the answer has no ``speaker``, so a voice that was never enrolled is not given a name.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, create_model

from elp.errors import ConfigError
from elp.speech_activity import VoiceGate
from elp.tasks.base import EnrolledVoice, TaskOption, TaskRequest, TaskSpec
from elp.tasks.verification import ENROLLED_SCORE_DECIMALS, served_threshold

if TYPE_CHECKING:
    import torch

    from elp.config import AdapterSetConfig


class Candidate(BaseModel):
    speaker: str
    score: float = Field(ge=-1.0, le=1.0, description="cosine with the speaker's enrolment (2 decimals)")


def similarities(probes: Sequence[torch.Tensor], gallery: Sequence[EnrolledVoice]) -> list[list[float]]:
    """Cosine of each probe (rows) with each enrolled voice (columns), in one product."""
    import torch

    if not probes or not gallery:
        return [[] for _ in probes]

    def unit_rows(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.nn.functional.normalize(torch.stack([t.detach().float().cpu().flatten() for t in tensors]), dim=1)

    return (unit_rows(probes) @ unit_rows([voice.embedding for voice in gallery]).T).clamp(-1.0, 1.0).tolist()


def ranked_scores(probe: torch.Tensor, gallery: Sequence[EnrolledVoice]) -> list[tuple[int, float]]:
    """(gallery index, cosine) of every enrolled voice against ``probe``, best first (ties: gallery order)."""
    return sorted(enumerate(similarities([probe], gallery)[0]), key=lambda pair: (-pair[1], pair[0]))


def assign_enrolled(voices: Sequence[torch.Tensor], gallery: Sequence[EnrolledVoice],
                    threshold_at: Callable[[int, int], float]) -> list[tuple[int, float] | None]:
    """Each of ``voices`` (embeddings of different speakers: a recording's clusters) given at most one enrolled
    voice and each enrolled voice at most one of them: pairs taken best score first, kept when the score reaches
    ``threshold_at(voice index, gallery index)``. Per voice: (gallery index, score), or None."""
    pairs = [(score, voice, index) for voice, row in enumerate(similarities(voices, gallery))
             for index, score in enumerate(row)]
    named: list[tuple[int, float] | None] = [None] * len(voices)
    taken: set[int] = set()
    for score, voice, index in sorted(pairs, key=lambda pair: (-pair[0], pair[1], pair[2])):
        if named[voice] is None and index not in taken and score >= threshold_at(voice, index):
            named[voice] = (index, score)
            taken.add(index)
    return named


def listed_voices(gallery: Sequence[EnrolledVoice] | None, listed: str | None) -> list[EnrolledVoice]:
    """The enrolled voices a request lists (ids separated by commas; spaces around them ignored), or all of them
    when it lists none: the people a deployment expects (fewer candidates, fewer voices named wrongly)."""
    names = {name.strip() for name in str(listed or "").split(",") if name.strip()}
    return [voice for voice in gallery or [] if not names or voice.speaker in names]


@dataclass(frozen=True)
class IdentificationTask(TaskSpec):
    """``threshold_offset`` moves the set's verification threshold to the score the best enrolled speaker must
    reach to be named, and ``gallery_slope`` x ln(speakers compared) more on top: an unknown voice has as many
    chances to pass as there are enrolled speakers, so a larger gallery needs a higher bar. Both chosen on
    validation voices (docs/results/identification.md)."""

    threshold_offset: float = 0.05
    gallery_slope: float = 0.0
    top_k_default: int = 3

    def validate(self, config: AdapterSetConfig) -> None:
        raise ConfigError(f"{self.name} has no adapter sets of its own: it answers with {self.set_task} sets")

    def naming_threshold(self, config: AdapterSetConfig, fallbacks: Any, probe_s: float,
                         enrolled_s: float | None, compared: int = 1) -> float:
        """The score an enrolled speaker must reach to be named, for a probe of ``probe_s`` seconds against an
        enrolment of ``enrolled_s`` seconds (the set's duration table at the shorter of the two) when ``compared``
        enrolled speakers were compared."""
        shorter_s = min(probe_s, enrolled_s) if enrolled_s else probe_s
        return (served_threshold(config, fallbacks, shorter_s) + self.threshold_offset
                + self.gallery_slope * math.log(max(compared, 1)))

    @functools.cached_property
    def answer_fields(self) -> type[BaseModel]:
        return create_model(
            "IdentifyAnswerFields",
            speaker=(str | None, Field(None, description="the enrolled speaker this is; absent when none scores at "
                                                          "the threshold (a voice that was not enrolled)")),
            score=(float | None, Field(None, ge=-1.0, le=1.0, description="the best enrolled speaker's score (2 "
                                                                          "decimals); absent when none was compared")),
            threshold=(float, Field(description="the score that best speaker had to reach: the set's threshold "
                                                "at the shorter of the clip and its enrolment, moved by a "
                                                "validated offset")),
            candidates=(list[Candidate], Field(description="the best-scoring enrolled speakers, best first "
                                                           "(`top_k` of them)")),
            enrolled_speakers=(int, Field(description="how many speakers the clip was compared with")),
        )

    def answer_confidence(self, answer: Mapping[str, Any]) -> float | None:
        """The best enrolled speaker's score (a cosine, clipped to 0-1): falling, the enrolments no longer sound
        like the callers (another microphone, or voices nobody enrolled); None when nobody was compared."""
        score = answer.get("score")
        return None if score is None else min(max(float(score), 0.0), 1.0)

    def respond(self, request: TaskRequest) -> dict[str, Any]:
        """Rank the enrolled voices (``request.gallery``; only those ``speakers`` lists, when sent) by cosine with
        the clip; name the best at its threshold."""
        gallery = listed_voices(request.gallery, request.fields.get("speakers"))
        ranked = ranked_scores(request.rows[0].embedding, gallery)
        top_k = int(request.fields.get("top_k") or self.top_k_default)
        candidates = [{"speaker": gallery[index].speaker, "score": round(score, ENROLLED_SCORE_DECIMALS)}
                      for index, score in ranked[:top_k]]
        if not ranked:  # none of the speakers listed is enrolled
            return {"speaker": None, "score": None, "threshold": round(self.naming_threshold(
                request.config, request.fallbacks, request.durations_s[0], None), 4),
                "candidates": [], "enrolled_speakers": 0}
        best, best_score = ranked[0]
        threshold = self.naming_threshold(request.config, request.fallbacks, request.durations_s[0],
                                          gallery[best].duration_s, len(gallery))
        return {"speaker": gallery[best].speaker if best_score >= threshold else None,
                "score": round(best_score, ENROLLED_SCORE_DECIMALS), "threshold": round(threshold, 4),
                "candidates": candidates, "enrolled_speakers": len(gallery)}


IDENTIFICATION = IdentificationTask(
    name="identification", route="/identify", default_adapter="verify-default", activation="relu",
    display_name="Who is this", headline_field="speaker", answers_with="verification",
    summary="Which enrolled speaker is this? The clip against the speakers enrolled for the set; no name when none "
            "scores at the threshold.",
    description="Needs the API key (the answer names enrolled speakers) and counts against the per-client limit "
                "of verifications against enrolled speakers.",
    file_description="a clip of the speaker to identify", target_field="speaker", headline_metric="accuracy",
    higher_is_better=True, metrics=("accuracy",), evaluation="identification", live_streams=False,
    enrolled_gallery=True, speech_gate=VoiceGate(),  # a clip without a voice would still rank someone first
    options=(TaskOption("top_k", "how many of the best-scoring enrolled speakers to list (default 3)",
                        minimum=1, maximum=20),
             TaskOption("speakers", "compare with these enrolled speakers only, ids separated by commas (default: "
                        "all; fewer candidates, fewer voices named wrongly)", kind=str)),
)
