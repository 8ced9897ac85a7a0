"""What a task is: one :class:`TaskSpec` holds everything the library, the server, the client,
training and evaluation need to know about it (LitServe's ``LitAPI`` idea, one module per task).

Importing this module (and the task modules) does no heavy work: torch is imported inside the
methods that build modules, so the torch-free client can read routes, inputs and answer models.

A served answer is made in three stages (like Infinity's pre / core / post):
pre = audio decoding (server), core = the batched model pass that returns each row's head output
(:meth:`elp.MultiAdapterModel.head_outputs`), post = the task's :class:`PostProcessor` turning one
row's head output into answer fields (CTC beam search, softmax + labels, slots), run after the batch;
:meth:`TaskSpec.respond` then shapes a request's rows into its answer (verification's cosine scoring).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from elp.diarization import SpeakerWindows
from elp.errors import ConfigError
from elp.long_form import LongFormSplitter
from elp.speech_activity import SpeechGate, VoiceGate
from elp.tasks.recipe import TrainingRecipe
from elp.whisper_languages import language_name

if TYPE_CHECKING:  # torch-free at import time
    import torch
    from torch import nn

    from elp.adapter_set import AdapterSet
    from elp.config import AdapterSetConfig
    from elp.heads.config import HeadConfig


class PostProcessor(Protocol):
    """One row's head output (CPU float tensor: CTC log-probs over real frames, an embedding, logits)
    -> the answer fields of that row (``text``; ``embedding``; ``label`` and ``scores``...).

    Picklable (a process pool receives it once per process), and ``offload`` says whether it is worth
    running off the model worker (an LM beam search: yes; a softmax: no)."""

    offload: bool

    def __call__(self, output: torch.Tensor) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ExtraClip:
    """An upload besides ``file`` that a task's request may carry (verification's ``reference``)."""

    name: str
    description: str


@dataclass(frozen=True)
class EnrolledReference:
    """A form field naming an enrolled speaker, sent instead of the clip ``instead_of``: the server
    checks the API key and the per-client rate limit, and hands the enrolled embedding to
    :meth:`TaskSpec.respond`. Enrolment (``POST /speakers/{id}``) uses the task that declares this."""

    field: str
    instead_of: str
    description: str


@dataclass(frozen=True)
class EnrolledVoice:
    """One enrolled speaker as a gallery task sees it (:attr:`TaskSpec.enrolled_gallery`): the id, the stored
    unit embedding and the total seconds of its enrolment clips."""

    speaker: str
    embedding: torch.Tensor
    duration_s: float | None = None


@dataclass(frozen=True)
class TaskOption:
    """A form field besides the clips that tunes one request's answer (diarization's ``num_speakers``): an
    integer (``kind`` int) or a number within ``[minimum, maximum]``, a switch (``kind`` bool) or text (``kind``
    str), absent when not sent. The route, the client's keyword, the CLI flag and the page's input are made from it;
    :meth:`TaskSpec.respond` reads it from ``TaskRequest.fields``. A ``gallery`` switch sent true asks for the
    speakers enrolled for the set (``TaskRequest.gallery``): the server then checks the key and the rate limit
    as for :attr:`TaskSpec.enrolled_gallery`."""

    name: str
    description: str
    kind: type = int
    minimum: float | None = None
    maximum: float | None = None
    gallery: bool = False

    @property
    def flag(self) -> str:
        """``num_speakers`` -> ``--num-speakers``."""
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class OpenAIAudio:
    """The task also answers on OpenAI's audio API, ``POST /v1/audio/<route>`` (``transcriptions``, ``translations``),
    so that tools and SDKs written against it (the ``openai`` package, editors' and note-takers' "Whisper API"
    settings) reach this server by its base URL alone. The request's ``model`` names one of the task's sets; OpenAI's
    own model names (``model_aliases``) are answered by the task's default set, since such tools often send one fixed
    name. ``language``: the ISO-639-1 code of the speech the task's sets read, taken as the ``language`` form field (a
    request naming another is refused, not silently misread); "" = the sets detect the language, and the route takes
    no ``language`` (OpenAI's translations). ``language_name``: ``verbose_json``'s ``language`` unless the answer
    names the language it detected (its ``language`` field, a code). ``whisper_task``: ``verbose_json``'s ``task``.
    ``streams``: ``stream=true`` is offered (server-sent events of the text as it is read); ``word_timestamps``:
    ``timestamp_granularities[]`` is. ``diarized_with``: the task whose answer (``turns`` of ``speaker_N``, naming by
    ``TaskRequest.gallery``) splits the transcript by speaker for OpenAI's ``response_format=diarized_json``; "" =
    not offered. The defaults are OpenAI's transcriptions route's."""

    route: str
    language: str = ""
    language_name: str = ""
    model_aliases: tuple[str, ...] = ()
    diarized_with: str = ""
    whisper_task: str = "transcribe"
    streams: bool = True
    word_timestamps: bool = True

    def language_of(self, answer: Mapping[str, Any]) -> str:
        """``verbose_json``'s ``language``: the name of the language the answer says it detected (``fr`` ->
        ``french``), else ``language_name``."""
        detected = answer.get("language")
        return language_name(str(detected)) if detected else self.language_name


@dataclass
class TaskRequest:
    """What :meth:`TaskSpec.respond` sees of one answered request (rows in upload order: ``file``
    first, then the extra clips that were sent)."""

    config: AdapterSetConfig
    rows: Sequence[Any]  # elp.model.Prediction
    durations_s: Sequence[float]
    fields: Mapping[str, Any] = field(default_factory=dict)  # extra form fields (an enrolled speaker id, options)
    enrolled: torch.Tensor | None = None  # the enrolled reference's embedding, when one was named
    enrolled_duration_s: float | None = None  # the enrolled reference's clips' total duration
    #: every speaker enrolled for the answering set's version (tasks with ``enrolled_gallery``), else None
    gallery: Sequence[EnrolledVoice] | None = None
    fallbacks: Mapping[str, Any] = field(default_factory=dict)  # deployment defaults (a threshold)
    #: (start, end) seconds of each row when a long ``file`` was split (:attr:`TaskSpec.long_form`): the rows
    #: are then its segments with sound, in order (none for a silent recording); None when it was read whole
    segments_s: Sequence[tuple[float, float]] | None = None


@dataclass(frozen=True)
class TaskSpec:
    """A task. Subclasses implement the behaviour (head, loss, post-processing, answer); instances
    carry the data, so tasks that behave alike (classifiers) are one class and one instance each.

    ``name``: the ``task`` of an adapter config. ``route``: its HTTP endpoint; its last segment also
    names the client method, the CLI command and the default-adapter setting
    (``ELP_DEFAULT_<ENDPOINT>_ADAPTER``). ``activation``: the adapters' reference activation (ELP.md).
    ``target_field``: what a training manifest row supplies (``text``, ``label`` or ``speaker``).
    ``headline_metric`` selects checkpoints (``higher_is_better`` says which way); ``metrics`` are the
    figures an evaluation reports, computed the ``evaluation`` way (``transcripts``, ``trials`` or
    ``labels``: one evaluation per way, shared by every task of that way)."""

    name: str
    route: str
    summary: str
    default_adapter: str
    activation: str
    target_field: str
    headline_metric: str
    higher_is_better: bool
    metrics: tuple[str, ...]
    evaluation: str
    description: str = ""
    #: OpenAPI description of the ``file`` upload
    file_description: str = ""
    #: sets that answer, in this order, when the default named is not in the store (a default made at setup,
    #: such as ``language-whisper``, falls back to the trained set that ships in git)
    fallback_adapters: tuple[str, ...] = ()
    #: width of the head's hidden layer in a new set (0: a linear head)
    head_hidden_dim: int = 256
    supports_prosody: bool = True
    supports_language_model: bool = False
    #: whether a set may carry a text branch (``elp.text_intent``: the ASR transcript, read by a word classifier)
    supports_text_branch: bool = False
    #: whether a set may carry a pretrained sequence decoder instead of a trained head (``elp.heads.seq2seq``)
    supports_decoder: bool = False
    #: classes (or symbols) of a typical set when the task's example set has other sizes (parameter table)
    typical_outputs: int | None = None
    extra_clips: tuple[ExtraClip, ...] = ()
    enrolled_reference: EnrolledReference | None = None
    #: whether a request is compared with every speaker enrolled for the answering set (identification): the
    #: server checks the API key and the per-client rate limit, and hands them to :meth:`respond`
    #: (``TaskRequest.gallery``)
    enrolled_gallery: bool = False
    #: clips without a voice are refused (``422 no_speech``) and left out of evaluations: for tasks whose
    #: answer means nothing without speech (two silent clips embed alike: "same speaker")
    speech_gate: SpeechGate | None = None
    #: the answer fields of a clip without a voice (``VoiceGate()``'s rule, moved by the deployment's
    #: ``ELP_SPEECH_DETECTOR`` / ``ELP_MIN_SPEECH_S`` / ``ELP_SPEECH_FLOOR_DBFS``), given without the model, as
    #: (field, value) pairs: for tasks whose answer to silence or noise is "nothing" (ASR: no words; the shipped
    #: ASR sets make words of silence and of hiss)
    silence_answer: tuple[tuple[str, Any], ...] | None = None
    #: recordings longer than the model reads at once are taken (up to the server's ``max_long_form_s``) and
    #: cut at pauses into segments, one row each; :meth:`respond` joins them (``TaskRequest.segments_s``).
    #: Only for tasks whose request is the one ``file``. Any splitter with ``LongFormSplitter``'s interface
    #: (diarization's ``SpeakerWindows``: overlapping windows of every recording)
    long_form: LongFormSplitter | SpeakerWindows | None = None
    #: elp-train's defaults for the task: learning rates, augmentations it must not get
    training: TrainingRecipe = TrainingRecipe()
    #: what a person reads as the task's name (the try-it page's headings); "" = the name, capitalised
    display_name: str = ""
    #: the answer field that states the result (shown first on the page); "" = the first answer field
    headline_field: str = ""
    #: live streams (``/<endpoint>/stream``, tasks whose request is one clip): whether the answer of the
    #: utterance still being spoken is sent as it grows (ASR's words), besides each utterance's final answer
    partial_answers: bool = False
    #: whether the task has live streams (``/<endpoint>/stream``) when its request is one clip: not for tasks
    #: whose answer needs the whole recording (diarization's speakers are clustered over all of it)
    live_streams: bool = True
    #: form fields that tune a request's answer (:class:`TaskOption`)
    options: tuple[TaskOption, ...] = ()
    #: the task whose adapter sets this one answers with, when not its own (diarization embeds its windows
    #: with verification sets): it has no sets, training or evaluation of its own, and its default-adapter
    #: setting names one of that task's sets
    answers_with: str = ""
    #: the task also answers on OpenAI's audio API (:class:`OpenAIAudio`; a task whose answer is a transcript:
    #: ``text``, and ``words`` / ``segments`` with their times)
    openai_audio: OpenAIAudio | None = None
    #: its sets are only converted from a pretrained checkpoint (translation: Whisper's own decoder), never trained:
    #: no training, corpus manifest or evaluation of the training code, and no made-up sets in tests and benchmarks
    converted_only: bool = False
    #: its default set is loaded and pinned when the server starts (and /readyz waits for it); False: loaded on first
    #: use like any other set (translation, language: decoders of ~200 and ~100 MB that many deployments never
    #: call)
    default_at_start: bool = True

    def __post_init__(self) -> None:
        if (self.long_form is not None or self.silence_answer is not None or self.partial_answers) \
                and not self.one_clip:
            raise ConfigError(f"task {self.name!r}: long-form splitting, a silence answer and partial answers are for "
                              "tasks whose request is one clip (the server reads only that clip for them)")

    @property
    def set_task(self) -> str:
        """The ``task`` of the adapter sets that answer this task's requests."""
        return self.answers_with or self.name

    @property
    def streams(self) -> bool:
        """Whether ``/<endpoint>/stream`` exists: one-clip tasks that answer utterance by utterance."""
        return self.one_clip and self.live_streams

    def compares_with_enrolled(self, fields: Mapping[str, Any]) -> bool:
        """Whether a request with these form fields is compared with the enrolled speakers (key and rate limit)."""
        return self.enrolled_gallery or any(option.gallery and fields.get(option.name) for option in self.options)

    @property
    def one_clip(self) -> bool:
        """Whether a request is the one ``file``: such tasks also take long recordings and live streams."""
        return not self.extra_clips and self.enrolled_reference is None

    @property
    def silence_gate(self) -> SpeechGate | None:
        """The gate whose refusal is answered with ``silence_answer`` (the voice gate at its defaults; the
        server applies the deployment's overrides, the evaluation code ``ELP_SPEECH_DETECTOR``)."""
        return VoiceGate() if self.silence_answer is not None else None

    # -- names derived from the route ----------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """``/verify`` -> ``verify``: client method, CLI command, settings key, metrics label of the route."""
        return self.route.strip("/").replace("/", "_")

    @property
    def title(self) -> str:
        """``verify`` -> ``Verify``: prefix of the answer model (``VerifyAnswer``) and client result."""
        return "".join(part.capitalize() for part in self.endpoint.split("_"))

    @property
    def heading(self) -> str:
        """``display_name``, else ``language_id`` -> ``Language id``."""
        return self.display_name or self.name.replace("_", " ").capitalize()

    @property
    def headline(self) -> str:
        """The answer field that states the result: ``headline_field``, else the first of :attr:`answer_fields`."""
        return self.headline_field or next(iter(self.answer_fields.model_fields))

    # -- configuration -------------------------------------------------------------------------------
    def validate(self, config: AdapterSetConfig) -> None:
        """Raise ``ConfigError`` when ``config`` lacks what this task needs."""
        if config.language_model is not None and not self.supports_language_model:
            raise ConfigError(f"a {self.name} adapter set cannot carry a language model")
        if config.text_branch is not None and not self.supports_text_branch:
            raise ConfigError(f"a {self.name} adapter set cannot carry a text branch")
        if config.decoder is not None and not self.supports_decoder:
            raise ConfigError(f"a {self.name} adapter set cannot carry a sequence decoder")
        if config.decoder is not None:
            layers = int(config.backbone.get("num_layers", 0))
            if config.backbone.get("model_type") != "whisper" or config.vocab or config.language_model is not None:
                raise ConfigError("a decoder set is a Whisper backbone's decoder alone: no CTC vocabulary or LM")
            if config.method != "none" or config.weighted_sum_layers != [layers]:
                raise ConfigError(f"a decoder reads the encoder's output unchanged: method 'none', layers [{layers}]")
        if config.companion is not None:
            if config.decoder is None or not config.decoder.label_ids:
                raise ConfigError("a companion classifier rides beside a decoder label set (decoder.label_ids)")
            if max(config.companion.weighted_sum_layers) > int(config.backbone.get("num_layers", 0)):
                raise ConfigError("companion.weighted_sum_layers names a layer the encoder does not have")

    @staticmethod
    def refuse_decoder_training(adapter_set: AdapterSet | None) -> None:
        """A decoder set's weights are a pretrained checkpoint's: it is converted, never trained."""
        if adapter_set is not None and adapter_set.config.decoder is not None:
            raise ConfigError("a decoder set holds a pretrained decoder: it is converted, not trained")

    def num_outputs(self, config: AdapterSetConfig) -> int:
        raise NotImplementedError

    def build_head(self, head: HeadConfig, input_dim: int, num_outputs: int, *,
                   labels: list[str] | None = None, slot_names: list[str] | None = None) -> nn.Module:
        """The head on ``input_dim`` features with ``num_outputs`` (:meth:`num_outputs`) outputs."""
        raise NotImplementedError

    def example_fields(self, num_outputs: int | None = None) -> dict[str, Any]:
        """Config fields of a made-up set of this task (tests, the parameter table): labels, vocab..."""
        return {}

    # -- training ------------------------------------------------------------------------------------
    def build_loss(self, adapter_set: AdapterSet, num_targets: int, label_smoothing: float = 0.0) -> nn.Module:
        """The training loss (``num_targets``: classes or training speakers); its parameters, if any,
        are training-only and never stored in the set."""
        raise NotImplementedError

    def loss(self, loss_fn: nn.Module, output: torch.Tensor, output_lengths: torch.Tensor,
             targets: torch.Tensor, target_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``loss_fn`` (from :meth:`build_loss`) on a batch of head outputs."""
        return loss_fn(output, targets)

    # -- serving -------------------------------------------------------------------------------------
    def post_processor(self, adapter_set: AdapterSet) -> PostProcessor:
        raise NotImplementedError

    def enrolment_report(self, config: AdapterSetConfig, embeddings: Sequence[torch.Tensor],
                         fallbacks: Mapping[str, Any], durations_s: Sequence[float] | None = None) -> dict[str, Any]:
        """Extra fields of an enrolment's answer, from its clips' embeddings and durations (tasks with an
        ``enrolled_reference``; ``fallbacks`` as in :class:`TaskRequest`). Default: none."""
        return {}

    def prepare_for_serving(self, adapter_set: AdapterSet, options: Mapping[str, Any]) -> AdapterSet:
        """A freshly loaded set, adjusted by deployment-wide ``options`` (server settings by name) before
        it serves; the files on disk are not rewritten. Default: unchanged."""
        return adapter_set

    @functools.cached_property
    def answer_fields(self) -> type[BaseModel]:
        """The pydantic model of this task's own answer fields (the server adds adapter, duration and
        timings; the client's result type is made from it)."""
        raise NotImplementedError

    def respond(self, request: TaskRequest) -> dict[str, Any]:
        """A request's answer fields from its rows' post-processed predictions."""
        raise NotImplementedError

    def answer_confidence(self, answer: Mapping[str, Any]) -> float | None:
        """One number (0-1) for how sure the model was of an answer, for operators' metrics; None when the task
        has none to give (the default) or the answer holds nothing to judge."""
        return None

    def answer_at(self, answer: dict[str, Any], offset_s: float) -> dict[str, Any]:
        """An answer to a clip that starts ``offset_s`` into a longer stream, with the times it holds counted
        from the stream's start (a live stream's utterances). Default: no times to move."""
        return answer
