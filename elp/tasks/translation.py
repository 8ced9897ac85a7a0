"""Speech translation: speech in any language the set's decoder knows -> English text (Whisper's ``translate`` task).

A translation set is a Whisper checkpoint's own decoder on the shared encoder pass, converted
(``elp.convert.whisper_decoder_set --translate``), never trained: it detects each clip's language from its language
tokens (``DecoderConfig.language_ids``) and then writes English after ``<|lang|><|translate|><|notimestamps|>``.
The same task answers OpenAI's ``POST /v1/audio/translations``, which takes no ``language``: the source language is
detected, and named in the answer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, create_model

from elp.errors import ConfigError
from elp.long_form import LongFormSplitter, join_texts
from elp.tasks.base import OpenAIAudio, TaskRequest, TaskSpec

if TYPE_CHECKING:
    from torch import nn

    from elp.adapter_set import AdapterSet
    from elp.config import AdapterSetConfig
    from elp.heads.config import HeadConfig
    from elp.heads.whisper_text import WhisperTranscriber


class TranslationSegment(BaseModel):
    """One segment of a long recording that was translated in segments, with the language detected in it."""

    start_s: float
    end_s: float
    text: str
    language: str | None = None


@functools.lru_cache(maxsize=1)
def _answer_fields() -> type[BaseModel]:
    return create_model(
        "TranslationAnswerFields", text=(str, Field(..., description="the English translation")),
        language=(str | None, Field(None, description="ISO 639-1 code of the spoken language the set detected (a "
                                    "recording read in segments: the one detected for most of its seconds); absent "
                                    "for a clip without a voice, answered without the model")),
        language_probability=(float | None, Field(None, ge=0.0, le=1.0, description="the decoder's probability of "
                                                  "that language among the set's languages (segments: their mean, "
                                                  "by seconds); low on short or mixed-language speech")),
        segments=(list[TranslationSegment] | None, Field(None, description="a recording longer than one segment may "
                                                         "be (20 s) is cut at its pauses and each segment translated "
                                                         "on its own: its span, text and detected language")),
    )


def main_language(rows: Sequence[Any], spans: Sequence[tuple[float, float]]) -> tuple[str | None, float | None]:
    """The language detected for the most seconds of ``rows`` (their ``label``), and its probability averaged over
    the rows by seconds; (None, None) when no row detected one."""
    seconds: dict[str, float] = {}
    weights = [max(end - start, 1e-6) for start, end in spans]
    for row, weight in zip(rows, weights, strict=True):
        if row.label:
            seconds[row.label] = seconds.get(row.label, 0.0) + weight
    if not seconds:
        return None, None
    language = max(seconds, key=seconds.__getitem__)
    probability = sum(weight * float((row.scores or {}).get(language, 0.0))
                      for row, weight in zip(rows, weights, strict=True)) / sum(weights)
    return language, round(probability, 4)


class TranslationTask(TaskSpec):
    def validate(self, config: AdapterSetConfig) -> None:
        super().validate(config)
        if config.decoder is None or not config.decoder.language_ids:
            raise ConfigError("a translation set is a Whisper decoder that detects each clip's language "
                              "(decoder.language_ids): elp.convert.whisper_decoder_set --translate")

    def num_outputs(self, config: AdapterSetConfig) -> int:
        return config.decoder.vocab_size if config.decoder is not None else 0

    def build_head(self, head: HeadConfig, input_dim: int, num_outputs: int, *,
                   labels: list[str] | None = None, slot_names: list[str] | None = None) -> nn.Module:
        raise ConfigError("a translation set is a converted decoder: it has no trained head")

    def build_loss(self, adapter_set: AdapterSet, num_targets: int, label_smoothing: float = 0.0) -> nn.Module:
        self.refuse_decoder_training(adapter_set)
        raise ConfigError("a translation set is converted, not trained")

    def post_processor(self, adapter_set: AdapterSet) -> WhisperTranscriber:
        from elp.heads.whisper_text import WhisperTranscriber

        decoder = adapter_set.config.decoder
        assert decoder is not None  # validate
        return WhisperTranscriber(adapter_set.head.tokens(), decoder.spoken_form, languages=decoder.languages)

    @functools.cached_property
    def answer_fields(self) -> type[BaseModel]:
        return _answer_fields()

    def respond(self, request: TaskRequest) -> dict[str, Any]:
        """The translation (a long recording's segments joined, each with its span and language) and the language
        detected for most of the speech."""
        rows = request.rows
        spans = list(request.segments_s) if request.segments_s is not None else [(0.0, request.durations_s[0])]
        language, probability = main_language(rows, spans)
        found = {} if language is None else {"language": language, "language_probability": probability}
        if request.segments_s is None:
            return {"text": rows[0].text or "", **found}
        segments = [{"start_s": round(start, 3), "end_s": round(end, 3), "text": join_texts([row.text or ""]),
                     "language": row.label} for (start, end), row in zip(spans, rows, strict=True)]
        return {"text": join_texts([row.text or "" for row in rows]), **found, "segments": segments}


TRANSLATION = TranslationTask(
    name="translation", display_name="Speech translation", route="/translate",
    summary="Translate speech in any language the set knows into English text (the language is detected).",
    default_adapter="translate-whisper", activation="gelu",
    target_field="text", headline_metric="chrf", higher_is_better=True, metrics=("chrf", "bleu", "language_accuracy"),
    evaluation="translations",  # training.translation_eval, on real parallel speech
    head_hidden_dim=0, supports_prosody=False, supports_decoder=True, converted_only=True,
    default_at_start=False,
    # a clip without a voice: no words, and no language to name (the decoder would translate silence into words)
    silence_answer=(("text", ""),),
    long_form=LongFormSplitter(),
    # no live streams: an utterance cut at a pause is often too short for the language to be detected well
    live_streams=False,
    # OpenAI's translations take no language (it is detected), no stream and no timestamp granularities; its only
    # model name is whisper-1. verbose_json's language: the detected one (OpenAI documents "english", the output's)
    openai_audio=OpenAIAudio(route="translations", language_name="english", model_aliases=("whisper-1",),
                             whisper_task="translate", streams=False, word_timestamps=False),
)
