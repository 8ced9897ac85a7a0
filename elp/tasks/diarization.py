"""Speaker diarization: who spoke when in a recording (``POST /diarize``).

It answers with speaker-verification sets (:attr:`TaskSpec.answers_with`): the recording's voiced stretches are
cut into overlapping windows (:class:`elp.diarization.SpeakerWindows`), each window one row embedded by the set as
a verification clip would be, and :meth:`DiarizationTask.respond` clusters the windows into speakers. The method
and its measured figures: :mod:`elp.diarization`, docs/results/diarization.md.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, create_model

from elp.diarization import SpeakerWindows, cluster_windows, first_appearance_order, turns_from_windows
from elp.errors import ConfigError
from elp.tasks.base import TaskOption, TaskRequest, TaskSpec
from elp.tasks.identification import IDENTIFICATION, assign_enrolled, listed_voices
from elp.tasks.verification import ENROLLED_SCORE_DECIMALS, served_threshold

if TYPE_CHECKING:
    from elp.config import AdapterSetConfig

#: how speakers are named in answers: ``speaker_1``, ``speaker_2``... in order of first turn
SPEAKER_PREFIX = "speaker_"


class SpeakerTurn(BaseModel):
    start_s: float
    end_s: float
    speaker: str


class SpeakerTime(BaseModel):
    speaker: str
    speech_s: float = Field(description="seconds of the recording given to this speaker")
    name: str | None = Field(None, description="the enrolled speaker this one is (with `name_speakers`); absent "
                                               "when none scores at the threshold")
    score: float | None = Field(None, description="that enrolled speaker's score (2 decimals)")


@dataclass(frozen=True)
class DiarizationTask(TaskSpec):
    """``threshold_offset`` moves the set's verification threshold (at the window's duration) to the
    clustering's stopping similarity; ``refine_steps`` rounds of nearest-mean reassignment follow it. Both
    were chosen on validation conversations (docs/results/diarization.md)."""

    threshold_offset: float = -0.05
    refine_steps: int = 0
    max_speakers_default: int = 10
    #: added to the identification threshold when a found speaker is named by an enrolled one (``name_speakers``)
    naming_offset: float = 0.1

    def validate(self, config: AdapterSetConfig) -> None:
        raise ConfigError(f"{self.name} has no adapter sets of its own: it answers with {self.set_task} sets")

    def stopping_threshold(self, request: TaskRequest) -> float:
        """The similarity under which two clusters are different speakers, for this request's set."""
        assert isinstance(self.long_form, SpeakerWindows)
        return served_threshold(request.config, request.fallbacks, self.long_form.window_s) + self.threshold_offset

    @functools.cached_property
    def answer_fields(self) -> type[BaseModel]:
        return create_model(
            "DiarizeAnswerFields",
            speaker_count=(int, Field(description="how many speakers were found")),
            speakers=(list[SpeakerTime], Field(description="the speakers found, in order of their first turn")),
            turns=(list[SpeakerTurn], Field(description="who spoke when: voiced stretches, each given to one "
                                                        "speaker (overlapping speech goes to one of them)")),
            threshold=(float | None, Field(None, description="the similarity under which windows were split into "
                                                            "different speakers (absent when num_speakers was sent)")),
            windows=(int, Field(description="windows embedded: the cost of the answer, ~1 per 0.75 s of voice")),
        )

    def respond(self, request: TaskRequest) -> dict[str, Any]:
        """Cluster the windows' embeddings (``request.rows``, spans in ``segments_s``) into speakers."""
        import numpy as np

        spans = list(request.segments_s or [])
        if not spans:
            return {"speaker_count": 0, "speakers": [], "turns": [], "windows": 0}
        embeddings = np.stack([row.embedding.detach().float().cpu().numpy().reshape(-1) for row in request.rows])
        known = request.fields.get("num_speakers")
        threshold = None if known else self.stopping_threshold(request)
        labels = cluster_windows(embeddings, threshold=threshold or 0.0, num_speakers=known,
                                 max_speakers=request.fields.get("max_speakers") or self.max_speakers_default,
                                 refine_steps=self.refine_steps)
        turns = turns_from_windows(spans, labels.tolist())
        # speakers named in order of their first turn; a cluster whose windows lost every instant is none
        names = first_appearance_order([speaker for _, _, speaker in turns]).tolist()
        speakers_of = dict(zip([cluster for _, _, cluster in turns], names, strict=True))  # cluster -> speaker index
        turns = [(start, end, name) for (start, end, _), name in zip(turns, names, strict=True)]
        speech = np.zeros(max(names, default=-1) + 1)
        for start, end, speaker in turns:
            speech[speaker] += end - start
        speakers = [{"speaker": f"{SPEAKER_PREFIX}{index + 1}", "speech_s": round(float(seconds), 3)}
                    for index, seconds in enumerate(speech)]
        if request.gallery:
            self.name_speakers(request, embeddings, labels, speakers_of, speakers)
        answer: dict[str, Any] = {
            "speaker_count": len(speech),
            "speakers": speakers,
            "turns": [{"start_s": start, "end_s": end, "speaker": f"{SPEAKER_PREFIX}{speaker + 1}"}
                      for start, end, speaker in turns],
            "windows": len(spans),
        }
        if threshold is not None:
            answer["threshold"] = round(threshold, 4)
        return answer

    def name_speakers(self, request: TaskRequest, embeddings: Any, labels: Any, speakers_of: dict[int, int],
                      speakers: list[dict[str, Any]]) -> None:
        """Give each found speaker the enrolled one it matches (``request.gallery``, only those ``name_among`` lists
        when sent), one to one: its windows' mean unit embedding against each enrolment, named at the identification
        threshold for the shorter of its speech and that enrolment, moved by ``naming_offset``."""
        import torch

        unit = torch.nn.functional.normalize(torch.from_numpy(embeddings).float(), dim=1)
        clusters = sorted(speakers_of, key=speakers_of.__getitem__)
        voices = [unit[torch.from_numpy(labels == cluster)].mean(dim=0) for cluster in clusters]
        gallery = listed_voices(request.gallery, request.fields.get("name_among"))
        seconds = [speakers[speakers_of[cluster]]["speech_s"] for cluster in clusters]

        def threshold_at(voice: int, index: int) -> float:
            return IDENTIFICATION.naming_threshold(request.config, request.fallbacks, seconds[voice],
                                                   gallery[index].duration_s) + self.naming_offset

        for cluster, match in zip(clusters, assign_enrolled(voices, gallery, threshold_at), strict=True):
            if match is not None:
                speakers[speakers_of[cluster]].update(name=gallery[match[0]].speaker,
                                                      score=round(match[1], ENROLLED_SCORE_DECIMALS))


DIARIZATION = DiarizationTask(
    name="diarization", route="/diarize", default_adapter="verify-default", activation="relu",
    display_name="Who spoke when", headline_field="speaker_count", answers_with="verification",
    summary="Who spoke when: the recording's speakers and their turns.",
    description="Windows of the voiced stretches are embedded by a speaker-verification set and clustered; "
                "send ``num_speakers`` when you know it.",
    file_description="a recording of one or more speakers (up to the server's long-recording limit)",
    target_field="speaker", headline_metric="der", higher_is_better=False, metrics=("der",),
    evaluation="conversations", long_form=SpeakerWindows(), live_streams=False,
    options=(TaskOption("num_speakers", "the number of speakers, when known (the clustering stops there)",
                        minimum=1, maximum=20),
             TaskOption("max_speakers", "at most this many speakers (default 10)", minimum=1, maximum=20),
             TaskOption("name_speakers", "name the speakers found by the speakers enrolled for the set (the API key; "
                        "counts against the per-client limit of verifications against enrolled speakers)",
                        kind=bool, gallery=True),
             TaskOption("name_among", "name the speakers found by these enrolled speakers only, ids separated by "
                        "commas: the people expected in the recording (fewer wrong names); implies name_speakers",
                        kind=str, gallery=True)),
)
