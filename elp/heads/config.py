"""Head configuration shared by every task (the tasks themselves: ``elp.tasks``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from elp.config_parsing import build_strict
from elp.errors import ConfigError

POOLINGS = ("mean", "stats", "max")
VOICE_KINDS = ("tdnn", "ge2e", "dvector", "campplus")
SECOND_VOICE_KINDS = ("", "ge2e", "dvector", "campplus")  # converted encoders: sized by channels, layers, embedding


@dataclass
class HeadConfig:
    """``hidden_dim``: width of the projection before pooling (pooled heads) or of the optional
    hidden layer of the CTC head (0 = linear CTC head, the reference setup). ``embedding_dim``:
    speaker embedding size. ``dropout`` applies in training only. ``pooling``: ``max`` keeps the
    strongest frame per unit (keyword-like evidence), ``stats`` is mean and std. ``factorized_slots``
    (intents written ``action_object_location``): score each slot value and sum them per intent, so an
    intent's score is shared with every intent that has the same action, object or location.
    ``prosody`` (pooled heads): also read the clip's pitch, loudness, tilt and voicing statistics
    (:mod:`elp.heads.prosody`), normalised and projected to ``prosody_dim``, beside the pooled frames.
    ``pitch_weight`` > 0 (speaker head): the embedding also carries the clip's median pitch, as two
    coordinates on a circle (angle ``pitch_angle`` radians per standard deviation of the training
    clips' pitch) weighted so that the cosine of two embeddings becomes
    ``(cos_voice + pitch_weight * cos(pitch_angle * dz)) / (1 + pitch_weight)``: score fusion of a
    prosodic speaker cue that enrolment averaging and cosine scoring handle unchanged.
    ``voice_weight`` in (0, 1] (speaker head): the set also carries a voice branch
    (:mod:`elp.heads.voice`, ``voice_channels`` / ``voice_pooled_channels`` / ``voice_embedding_dim``
    wide) that reads the clip's own log-mel spectrum, and the voice cosine before any pitch term is
    ``(1 - voice_weight) * cos_encoder + voice_weight * cos_branch`` (1: the branch alone).
    ``voice_kind``: ``tdnn`` (that convolution stack, distilled by ``training.distill_voice``) or
    ``ge2e`` (:mod:`elp.heads.ge2e`, an LSTM speaker encoder ``voice_layers`` deep and ``voice_channels``
    wide, converted from a published checkpoint; ``voice_pooled_channels`` is not read) or ``dvector``
    (:mod:`elp.heads.dvector`, another published LSTM speaker encoder, sized the same way) or ``campplus``
    (:mod:`elp.heads.campplus`, a published CAM++ network; channels 128 and 3 dense blocks, its one layout).
    ``second_voice_kind`` (any converted kind, "" = none) with ``second_voice_weight`` > 0: a second
    converted branch beside the first (``second_voice_channels`` / ``_layers`` / ``_embedding_dim``); the
    voice cosine is then ``(1 - v - v2) cos_encoder + v cos_branch + v2 cos_second``. Why: two real-speaker
    encoders trained on other data err on different pairs, and the weighted concatenation averages them
    under the same enrolment and cosine scoring.
    ``centred`` (speaker head): the unit embedding (before any pitch coordinates) minus a stored centre, the
    mean embedding of a cohort of other real voices (``training.verify_norm centre``), renormalised. Why:
    a speaker network whose embeddings share a large common part (GE2E's are non-negative) scores every
    pair high; centring on real voices removes what all of them share, and as an embedding shift it needs
    nothing of enrolment or scoring (the cosine of centred embeddings is the cohort-centred score).
    ``context_blocks`` (CTC head): residual depthwise-convolution blocks (``context_kernel`` frames wide)
    before the output layer. Every other trained part of a set works frame by frame (E-adapters on the
    FFN output, L-adapters per layer), so spelling a sound from its neighbours (English orthography)
    rests on the frozen attention alone; these blocks give the head its own trained context."""

    hidden_dim: int = 256
    pooling: str = "mean"
    embedding_dim: int = 256
    dropout: float = 0.1
    factorized_slots: bool = False
    prosody: bool = False
    prosody_dim: int = 64
    pitch_weight: float = 0.0
    pitch_angle: float = 0.75
    voice_weight: float = 0.0
    voice_channels: int = 256
    voice_pooled_channels: int = 768
    voice_embedding_dim: int = 256
    voice_kind: str = "tdnn"
    voice_layers: int = 3
    second_voice_kind: str = ""
    second_voice_weight: float = 0.0
    second_voice_channels: int = 768
    second_voice_layers: int = 3
    second_voice_embedding_dim: int = 256
    centred: bool = False
    context_blocks: int = 0
    context_kernel: int = 9

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.hidden_dim < 0 or self.embedding_dim <= 0 or self.prosody_dim <= 0:
            raise ConfigError("head sizes must be positive")
        if self.pitch_weight < 0 or not 0 < self.pitch_angle <= 3.15:
            raise ConfigError("pitch_weight must be >= 0 and pitch_angle in (0, pi]")
        if not 0.0 <= self.voice_weight <= 1.0:
            raise ConfigError("voice_weight must be in [0, 1]")
        if min(self.voice_channels, self.voice_pooled_channels, self.voice_embedding_dim) <= 0:
            raise ConfigError("voice branch sizes must be positive")
        if self.voice_kind not in VOICE_KINDS or self.voice_layers <= 0:
            raise ConfigError(f"voice_kind must be one of {VOICE_KINDS} and voice_layers positive")
        if self.second_voice_kind not in SECOND_VOICE_KINDS:
            raise ConfigError(f"second_voice_kind must be one of {SECOND_VOICE_KINDS}")
        if self.second_voice_weight < 0 or (self.second_voice_weight > 0) != bool(self.second_voice_kind):
            raise ConfigError("second_voice_weight must be > 0 exactly when second_voice_kind is set")
        both = self.voice_weight + self.second_voice_weight
        if self.second_voice_weight > 0 and (self.voice_weight <= 0 or both > 1):
            raise ConfigError("a second voice branch needs a first (voice_weight > 0), the two weights summing to <= 1")
        if min(self.second_voice_channels, self.second_voice_layers, self.second_voice_embedding_dim) <= 0:
            raise ConfigError("second voice branch sizes must be positive")
        if self.context_blocks < 0 or self.context_kernel < 1 or self.context_kernel % 2 == 0:
            raise ConfigError("context_blocks must be >= 0 and context_kernel a positive odd width")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout must be in [0, 1)")


@dataclass
class DecoderConfig:
    """A pretrained sequence decoder that reads the frozen encoder's own output (``kind`` ``whisper``:
    the decoder the Whisper encoder was trained with, taken from the same checkpoint; ``elp.heads.seq2seq``).

    Why a set may carry one: on real people the project's CTC heads, trained on synthetic voices,
    make about twice the errors of Whisper's decoder, which learnt from 680k hours of real speech;
    served on the shared, length-sliced encoder pass it costs a fraction of Whisper's own ``generate``.
    Sizes mirror ``transformers.WhisperConfig``. ``prompt_ids``: the forced start (start of
    transcript, language, task, no timestamps). Token ids from ``eot_id`` up are special and never
    spelt. ``suppress_ids`` are never emitted, ``begin_suppress_ids`` not as the first token.
    A row's output is capped at ``max_tokens_per_second`` x its seconds + ``extra_tokens``.
    ``trailing_silence_s``: zeros appended to the clip before the encoder (the decoder was trained on
    speech followed by padding; without them it may run on past the speech). Frames past the clip are
    the encoder's output on silence, stored with the set (``source_positions`` of them), as are the
    token strings below ``eot_id`` (``token_table_bytes`` of them, one per line). ``spoken_form``: answer
    as the CTC sets do (lower-case words, numbers spelt: ``elp.spoken_text``), so ``/asr`` reads one way
    whatever set serves it; False keeps the decoder's casing, punctuation and digits. ``stop_repeats`` > 1:
    a row whose output ends in the same span of 1-8 tokens that many times in a row ends there, the
    span kept once (greedy decoding's loops); 0 = off.

    ``draft_hidden`` > 0: the set carries a CTC draft of that width over ``draft_vocab`` (characters,
    blank first; ``elp.heads.draft``), and a decoder pass checks up to ``draft_max_tokens`` of its
    tokens at once (``elp.heads.speculative``) for calls of at most ``draft_max_rows`` of the set's
    rows: greedy decoding's tokens in fewer passes; a proposal stops before the first draft word whose
    confidence (lowest frame probability) is under ``draft_min_confidence``. 0 = greedy token by token.

    ``label_ids`` (a classifier set, e.g. language identification): the decoder does not transcribe; it
    reads the prompt and scores these tokens (one per label, in the set's label order) as the next one,
    as Whisper identifies a language from ``<|startoftranscript|>``. One decoder step a row.
    ``label_bias`` (empty, or one per label) is added to those logits: a prior fitted on labelled clips
    (``training.label_bias``), since a decoder trained mostly on English leans towards ``<|en|>`` on short
    or telephone-band speech. ``float32_encoder``: on an int8 encoder this set's rows read a float32
    copy of it (``elp.decoder_rows``); transcription needs it (asr-whisper's human CER 7.2% vs 9.7% on
    int8), language identification does not (68.8% vs 68.2% on real validation voices: the
    language-whisper card), so its rows share the int8 pass.

    ``alignment_heads``: ``[layer, head]`` pairs of cross-attention heads that follow the speech as the
    decoder writes it (the checkpoint's generation config names them); a transcribing set with some answers
    each word's time (``elp.decoding.token_alignment``). Empty: no word times.

    ``language_ids`` (their codes in ``languages``, same order): each row's language is detected as Whisper's own
    ``detect_language`` does it: one decoder step reads ``prompt_ids[0]`` (start of transcript), and the
    highest-scoring of these tokens takes the place of ``prompt_ids[1]`` before decoding (a translation set:
    ``<|lang|><|translate|><|notimestamps|>``, ``elp.heads.language_detection``). The row's output then starts with
    the probabilities of these tokens (a softmax over them). Why per row: a translation set hears any language, and
    a batch mixes them. Such a set writes another language than it hears, so it has no word times
    (``alignment_heads``), no draft (characters of the speech) and no ``label_ids``."""

    kind: str = "whisper"
    layers: int = 6
    heads: int = 8
    ffn_dim: int = 2048
    vocab_size: int = 51865
    max_target_positions: int = 448
    source_positions: int = 1500
    prompt_ids: list[int] = field(default_factory=list)
    eot_id: int = 50257
    suppress_ids: list[int] = field(default_factory=list)
    begin_suppress_ids: list[int] = field(default_factory=list)
    max_tokens_per_second: float = 6.0
    extra_tokens: int = 10
    trailing_silence_s: float = 2.0
    language: str = "en"
    token_table_bytes: int = 0
    spoken_form: bool = True
    stop_repeats: int = 0
    draft_hidden: int = 0
    draft_kernel: int = 5
    draft_vocab: list[str] = field(default_factory=list)
    draft_max_tokens: int = 8
    draft_max_rows: int = 1
    draft_min_confidence: float = 0.0
    label_ids: list[int] = field(default_factory=list)
    label_bias: list[float] = field(default_factory=list)
    float32_encoder: bool = True
    alignment_heads: list[list[int]] = field(default_factory=list)
    language_ids: list[int] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind != "whisper":
            raise ConfigError(f"decoder kind must be 'whisper', got {self.kind!r}")
        if min(self.layers, self.heads, self.ffn_dim, self.vocab_size, self.source_positions) <= 0:
            raise ConfigError("decoder sizes must be positive")
        if not self.prompt_ids or len(self.prompt_ids) >= self.max_target_positions:
            raise ConfigError("a decoder needs a forced prompt shorter than its positions")
        ids = [*self.prompt_ids, self.eot_id, *self.suppress_ids, *self.begin_suppress_ids, *self.label_ids,
               *self.language_ids]
        if any(not 0 <= token < self.vocab_size for token in ids):
            raise ConfigError("decoder token ids must lie inside its vocabulary")
        if not 0.0 <= self.trailing_silence_s <= 5.0 or self.max_tokens_per_second <= 0 or self.extra_tokens < 0:
            raise ConfigError("trailing_silence_s must be in [0, 5], max_tokens_per_second > 0, extra_tokens >= 0")
        if self.label_bias and len(self.label_bias) != len(self.label_ids):
            raise ConfigError("label_bias needs one value per label token")
        if self.token_table_bytes < 0 or self.stop_repeats == 1 or self.stop_repeats < 0:
            raise ConfigError("token_table_bytes must be >= 0 and stop_repeats 0 or > 1")
        if any(len(pair) != 2 or not 0 <= pair[0] < self.layers or not 0 <= pair[1] < self.heads
               for pair in self.alignment_heads):
            raise ConfigError("alignment_heads must be [layer, head] pairs inside the decoder")
        if self.draft_hidden < 0 or (self.draft_hidden and (len(self.draft_vocab) < 2 or self.draft_kernel % 2 == 0
                                                            or self.draft_max_tokens < 1 or self.draft_max_rows < 1
                                                            or not 0.0 <= self.draft_min_confidence <= 1.0)):
            raise ConfigError("a draft needs a blank and symbols, an odd kernel, max tokens / rows >= 1 and a "
                              "min confidence in [0, 1]")
        if (self.language_ids or self.languages) and (
                len(self.languages) != len(self.language_ids) or len(self.prompt_ids) < 2 or self.label_ids
                or self.alignment_heads or self.draft_hidden):
            raise ConfigError("language detection needs one code per language token, a prompt with a language "
                              "position, and no label tokens, word times or draft")


@dataclass
class CompanionConfig:
    """A pooled classifier that rides beside a decoder label set (``AdapterSetConfig.companion``): its own
    weighted sum of the encoder's layers (``weighted_sum_layers``) and ``head``, copied from a trained
    classifier set of the same task and labels (``source``). The set answers ``log_softmax(decoder labels) +
    weight * log_softmax(companion)``. Why: a pretrained decoder and a classifier trained on this project's
    data make different mistakes (on real voices, language-whisper alone 68.2%, with language-default's
    head beside it ~75%), and both read the same encoder pass, so the second opinion costs one pooled head.
    It reads the clip's own frames, not the decoder's trailing zeros."""

    head: HeadConfig
    weighted_sum_layers: list[int]
    weight: float = 1.0
    source: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.head, dict):
            self.head = build_strict(HeadConfig, self.head, "companion.head")
        if not self.weighted_sum_layers or min(self.weighted_sum_layers) < 0:
            raise ConfigError("companion.weighted_sum_layers must name encoder layers")
        if self.weight < 0:
            raise ConfigError("companion.weight must be >= 0")
