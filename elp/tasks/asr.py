"""ASR: a CTC head over the set's vocabulary; answers are transcripts, by best path or by beam search
under the word bigram LM an ASR set may carry. Or, instead of a trained head, the checkpoint's own
pretrained decoder (``decoder``: Whisper's, greedy; ``elp.heads.seq2seq``)."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, create_model

from elp.errors import ConfigError
from elp.long_form import LongFormSplitter, join_texts
from elp.tasks.base import OpenAIAudio, TaskRequest, TaskSpec
from elp.tasks.recipe import TrainingRecipe

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from elp.adapter_set import AdapterSet
    from elp.config import AdapterSetConfig
    from elp.decoding.bigram import WordBigramLM
    from elp.decoding.config import RescoringConfig
    from elp.heads.config import HeadConfig
    from elp.heads.seq2seq import WhisperTranscriber

#: the characters of the shipped sets and of test sets: index 0 the CTC blank
CTC_VOCAB = ["<blank>", " ", "'", *"abcdefghijklmnopqrstuvwxyz"]


#: ``asr_rescoring`` (``ELP_ASR_RESCORING``): whether sets that carry a second pass run it
RESCORING_MODES = ("auto", "true", "false")


#: the setting was a boolean before ``auto``: its spellings still mean true / false
_BOOLEAN_SPELLINGS = {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false", "off": "false"}


def normalise_rescoring(value: object) -> str:
    """A value of ``asr_rescoring`` (the server's setting, a library caller's option) as one of ``RESCORING_MODES``:
    booleans and their spellings (1 / 0, yes / no, on / off, any case) as true / false; anything else is refused."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    mode = _BOOLEAN_SPELLINGS.get(text, text)
    if mode not in RESCORING_MODES:
        raise ConfigError(f"asr_rescoring must be one of {RESCORING_MODES}, not {value!r}")
    return mode


def rescoring_mode(options: Mapping[str, Any]) -> str:
    """``options["asr_rescoring"]`` (``normalise_rescoring``); absent: false."""
    return normalise_rescoring(options.get("asr_rescoring", "false"))


def second_pass(options: Mapping[str, Any]) -> tuple[str | None, str]:
    """The precision a set's second pass runs in (None: it does not run) and why: ``true`` runs it, ``false`` does
    not, ``auto`` runs it beside a CPU encoder where its cost was measured to fit (the asr-default card: at most 1.6x
    a clip): in bfloat16 where the CPU computes that natively; in float32 beside the encoder ``ELP_DTYPE=auto`` picks
    on x86 CPUs without native bfloat16 (float32 without VNNI, int8 with it: ``float32_pass_fits``).
    Not on ARM (not measured), beside an encoder of unknown precision (``options["encoder_precision"]`` absent) or a
    GPU encoder (the pass, on the CPU, would cost many times the encoder and hold up the batch worker). The precision
    is ``options["rescoring_dtype"]`` when given (evaluation tools), else this machine's
    (``elp.decoding.rescoring.native_dtype``)."""
    from elp.decoding.rescoring import float32_pass_fits, native_dtype

    mode = rescoring_mode(options)
    dtype = str(options.get("rescoring_dtype") or native_dtype())
    if mode != "auto":
        return (dtype if mode == "true" else None), "the setting"
    if options.get("encoder_device", "cpu") != "cpu":
        return None, "the encoder is on a GPU"
    if dtype == "bfloat16":
        return dtype, "native bfloat16 on this CPU"
    encoder = options.get("encoder_precision")
    if not float32_pass_fits(encoder):
        return None, (f"no native bfloat16 on this CPU, whose float32 pass beside an encoder in "
                      f"{encoder or 'an unknown precision'} is not measured to fit")
    return dtype, f"a float32 pass beside a {encoder} encoder, measured to fit on this CPU class"


class CTCTranscriber:
    """CTC log-probabilities of one clip (real frames) -> ``{"text": ..., "words": ...}``: beam search under
    the LM when the set has one (``offload``: 15-25 ms a clip, compiled: ``elp.decoding.compiled``), else best
    path; then each word's span by forced alignment of that text.

    Picklable: it travels to a post-processing process whole (vocabulary, LM tensors); the search's
    caches are rebuilt there, not shipped."""

    def __init__(self, vocab: list[str], language_model: WordBigramLM | None, align: bool = True,
                 rescoring: RescoringConfig | None = None, rescorer_source: str | None = None,
                 rescorer_dtype: str = "float32") -> None:
        self.vocab = list(vocab)
        self.align = align  # also each word's span (``elp.decoding.alignment``); off for readers of the text alone
        self.language_model = language_model
        self.offload = language_model is not None
        #: a second pass over the beam (``elp.decoding.rescoring``): rows then carry their encoder frames
        self.rescoring = rescoring if language_model is not None and rescorer_source is not None else None
        self.rescorer_source = rescorer_source
        self.rescorer_dtype = rescorer_dtype  # the decoder's pass (``elp.decoding.rescoring.DTYPES``)
        self._decoder: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_decoder": None}  # the rescorer is shared per process, by its source

    @property
    def beam_decoder(self) -> Any:
        """The search (built on first use), or None for best-path decoding."""
        if self._decoder is None and self.language_model is not None:
            from elp.decoding.compiled import beam_decoder

            self._decoder = beam_decoder(self.vocab, self.language_model)
        return self._decoder

    def __call__(self, output: torch.Tensor) -> dict[str, Any]:
        """The transcript and its words' spans (fractions of the row's frames, so of its audio)."""
        from elp.decoding.alignment import ctc_word_spans, with_onset_lead

        output = output.float().cpu()
        frames = output[:, len(self.vocab):] if output.shape[-1] > len(self.vocab) else None
        output = output[:, : len(self.vocab)]
        log_probs = output.numpy()
        if self.language_model is None:
            from elp.heads.ctc import ctc_greedy_decode

            text = ctc_greedy_decode(output, output.shape[0], self.vocab)
        elif self.rescoring is not None and frames is not None:
            from elp.decoding.rescoring import checkpoint_rescorer

            hypotheses = self.beam_decoder.nbest(log_probs, self.rescoring.nbest)
            assert self.rescorer_source is not None
            rescorer = checkpoint_rescorer(self.rescorer_source, self.rescorer_dtype)
            text = rescorer.best(frames, hypotheses, self.rescoring).text
        else:
            text = self.beam_decoder.decode(log_probs)
        if not self.align:
            return {"text": text}
        frames = max(log_probs.shape[0], 1)
        spans = with_onset_lead(ctc_word_spans(log_probs, text, self.vocab))
        return {"text": text, "words": [(word, start / frames, end / frames, confidence)
                                        for word, start, end, confidence in spans]}


class AsrWord(BaseModel):
    """One word of the transcript and when it was said (CTC sets: the frames a forced alignment gives it; decoder
    sets: the frames their alignment heads attend to, edges moved to the sound)."""

    word: str
    start_s: float
    end_s: float
    confidence: float = Field(ge=0.0, le=1.0, description="CTC sets: the mean letter posterior on the word's frames "
                              "(low where the LM chose it against the acoustics); decoder sets: the mean probability "
                              "of the word's tokens. It ranks words; it is not a probability that the word is right")


class AsrSegment(BaseModel):
    """One segment of a long recording that was transcribed in segments."""

    start_s: float
    end_s: float
    text: str


@functools.lru_cache(maxsize=1)
def _answer_fields() -> type[BaseModel]:
    return create_model(
        "AsrAnswerFields", text=(str, ...),
        words=(list[AsrWord] | None, Field(None, description="each word of `text` with its start and end in the "
                                           "upload (s); absent for a decoder set without alignment heads, for "
                                           "a clip answered without the model, and where a decoder wrote more "
                                           "tokens than the clip has 20 ms frames")),
        segments=(list[AsrSegment] | None, Field(None, description="a recording longer than one segment may be "
                                                 "(20 s) is cut at its pauses and transcribed segment by segment: "
                                                 "each segment's span and text (absent for a clip read whole)")),
    )


def word_times(rows: Sequence[Any], spans: Sequence[tuple[float, float]]) -> list[dict[str, Any]] | None:
    """Each row's aligned words placed in its span of the upload (seconds, 3 decimals); None when no row has
    aligned words (a decoder set without alignment heads, or a silent clip answered without the model)."""
    if all(getattr(row, "words", None) is None for row in rows):
        return None
    return [{"word": word, "start_s": round(start + first * (end - start), 3),
             "end_s": round(start + last * (end - start), 3), "confidence": round(confidence, 3)}
            for row, (start, end) in zip(rows, spans, strict=True)
            for word, first, last, confidence in (row.words or [])]


class AsrTask(TaskSpec):
    def validate(self, config: AdapterSetConfig) -> None:
        super().validate(config)
        if config.decoder is None and not config.vocab:
            raise ConfigError("an ASR adapter set needs a CTC vocabulary or a decoder")
        if config.decoder is not None and config.decoder.label_ids:
            raise ConfigError("an ASR decoder set transcribes: no label tokens")
        if config.rescoring is not None and (config.decoder is not None or config.language_model is None
                                             or config.backbone.get("model_type") != "whisper"):
            raise ConfigError("rescoring is a second pass over a CTC set's LM beam on a Whisper encoder")

    def num_outputs(self, config: AdapterSetConfig) -> int:
        return config.decoder.vocab_size if config.decoder is not None else len(config.vocab or [])

    def build_head(self, head: HeadConfig, input_dim: int, num_outputs: int, *,
                   labels: list[str] | None = None, slot_names: list[str] | None = None) -> nn.Module:
        from elp.heads.ctc import CTCHead

        return CTCHead(input_dim, num_outputs, head)

    def example_fields(self, num_outputs: int | None = None) -> dict[str, Any]:
        return {"vocab": CTC_VOCAB if num_outputs is None else [str(i) for i in range(num_outputs)]}

    def build_loss(self, adapter_set: AdapterSet, num_targets: int, label_smoothing: float = 0.0) -> nn.Module:
        from torch import nn

        self.refuse_decoder_training(adapter_set)
        return nn.CTCLoss(blank=0, zero_infinity=True)

    def loss(self, loss_fn: nn.Module, output: torch.Tensor, output_lengths: torch.Tensor,
             targets: torch.Tensor, target_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """CTC over (time, batch, vocab) log-probs against concatenated target symbol ids."""
        return loss_fn(output.transpose(0, 1), targets, output_lengths, target_lengths)

    def post_processor(self, adapter_set: AdapterSet) -> CTCTranscriber | WhisperTranscriber:
        if adapter_set.config.decoder is not None:
            from elp.heads.seq2seq import WhisperTranscriber

            head = adapter_set.head
            return WhisperTranscriber(head.tokens(), adapter_set.config.decoder.spoken_form, timed=head.word_times)
        from elp.decoding.rescoring import precision_of

        rescoring = adapter_set.config.rescoring
        if rescoring is not None:  # the setting for where the pass runs
            rescoring = rescoring.at_precision(precision_of(adapter_set.rescorer_dtype), adapter_set.rescorer_encoder)
        return CTCTranscriber(adapter_set.config.vocab or [], adapter_set.language_model, rescoring=rescoring,
                              rescorer_source=adapter_set.rescorer_source, rescorer_dtype=adapter_set.rescorer_dtype)

    def prepare_for_serving(self, adapter_set: AdapterSet, options: Mapping[str, Any]) -> AdapterSet:
        """``asr_beam_width`` (``ELP_ASR_BEAM_WIDTH``) in place of a set's own, for sets with an LM; 0 keeps
        the set's. The LM tensors and fusion weights stay: only the search's latency/accuracy trade moves.
        A decoder set that names alignment heads answers its words' times, as a CTC set does. A set's second pass
        (``rescoring``) runs as ``asr_rescoring`` (``ELP_ASR_RESCORING``) says (``second_pass``), its decoder
        built here when ``backbone_source`` names the checkpoint; otherwise its beam's best answers."""
        if adapter_set.config.decoder is not None and adapter_set.head.time_words(True):
            adapter_set.refresh_post_processor()
        if adapter_set.config.rescoring is not None:
            self._prepare_second_pass(adapter_set, options)
        beam_width = int(options.get("asr_beam_width") or 0)
        language_model = adapter_set.language_model
        if beam_width and language_model is not None and language_model.config.beam_width != beam_width:
            language_model.config = dataclasses.replace(language_model.config, beam_width=beam_width)
            adapter_set.attach_language_model(language_model)  # a fresh search; the config records the width
        return adapter_set

    @staticmethod
    def _prepare_second_pass(adapter_set: AdapterSet, options: Mapping[str, Any]) -> None:
        """Keep the set's second pass at the chosen precision, its decoder built now (a missing one fails the load,
        not a request), or drop it. Under ``auto`` a backbone folder without the decoder drops it with a warning."""
        (dtype, reason), mode = second_pass(options), rescoring_mode(options)
        source = options.get("backbone_source")
        if dtype is not None and source:
            from elp.decoding.rescoring import checkpoint_rescorer
            from elp.errors import RescorerUnavailableError

            try:
                checkpoint_rescorer(source, dtype)
            except RescorerUnavailableError as exc:
                if mode != "auto":
                    raise
                log.warning("ASR second pass off (ELP_ASR_RESCORING=auto): %s", exc)
                dtype, reason = None, "no decoder in the backbone folder"
        if dtype is None:
            adapter_set.config.rescoring = None
            adapter_set.rescorer_source = None
            log.info("ASR second pass off (ELP_ASR_RESCORING=%s: %s)", mode, reason)
        else:
            adapter_set.rescorer_dtype, adapter_set.rescorer_encoder = dtype, options.get("encoder_precision")
            log.info("ASR second pass on, its decoder in %s (ELP_ASR_RESCORING=%s: %s)", dtype, mode, reason)
        adapter_set.refresh_post_processor()

    @functools.cached_property
    def answer_fields(self) -> type[BaseModel]:
        return _answer_fields()

    def respond(self, request: TaskRequest) -> dict[str, Any]:
        """The text (a long recording's segments joined, with their spans), and the words' times in the upload
        when the set aligns them."""
        spans = list(request.segments_s) if request.segments_s is not None else [(0.0, request.durations_s[0])]
        words = word_times(request.rows, spans)
        if request.segments_s is None:
            answer: dict[str, Any] = {"text": request.rows[0].text or ""}
        else:
            texts = [row.text or "" for row in request.rows]
            answer = {"text": join_texts(texts),
                      "segments": [{"start_s": round(start, 3), "end_s": round(end, 3), "text": join_texts([text])}
                                   for (start, end), text in zip(spans, texts, strict=True)]}
        return answer if words is None else {**answer, "words": words}

    def answer_at(self, answer: dict[str, Any], offset_s: float) -> dict[str, Any]:
        """The words' times moved by ``offset_s`` (ms precision, as answered)."""
        words = answer.get("words")
        if not words:
            return answer
        moved = [{**word, "start_s": round(word["start_s"] + offset_s, 3), "end_s": round(word["end_s"] + offset_s, 3)}
                 for word in words]
        return {**answer, "words": moved}

    def answer_confidence(self, answer: Mapping[str, Any]) -> float | None:
        """The mean confidence of the answer's words; None without words."""
        words = answer.get("words") or []
        return sum(word["confidence"] for word in words) / len(words) if words else None


ASR = AsrTask(
    name="asr", display_name="Speech recognition", route="/asr",
    summary="Transcribe a clip, or a recording of minutes (cut at its pauses).", default_adapter="asr-default",
    activation="gelu",
    target_field="text", headline_metric="cer", higher_is_better=False, metrics=("wer", "cer"),
    evaluation="transcripts", head_hidden_dim=0, supports_prosody=False, supports_language_model=True,
    supports_decoder=True,
    # 8 s of digital silence: asr-default "he is so", asr-whisper "you"
    silence_answer=(("text", ""),),
    # long recordings cut at every pause (its settings chosen on validation recordings: docs/results/long-form.md)
    long_form=LongFormSplitter(),
    # a live stream shows the words of the sentence still being spoken
    partial_answers=True,
    # tools written for OpenAI's "Whisper API" send these model names: the default set answers them. Every ASR set
    # this project ships or its recipes build reads English (letters a-z; asr-whisper's prompt is <|en|>)
    # who said what (response_format=diarized_json): the words given to /diarize's turns
    openai_audio=OpenAIAudio(route="transcriptions", language="en", language_name="english",
                             model_aliases=("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe",
                                            "gpt-4o-transcribe-diarize"), diarized_with="diarization"),
    # short silenced spans: the CTC head must spell from context, not memorise the training sentences
    training=TrainingRecipe(paper_rates=(2e-3, 1e-3, 1e-3), fast_rates=(2e-3, 1e-3, 5e-4),
                            augment=(("time_mask_prob", 0.5),)),
)
