"""The adapter-set configuration: what is stored in ``adapter_config.json``.

One dataclass per adapter kind lives in its own folder (``elp/tuners/*/config.py``); this module
composes them with the head, the task metadata and the backbone identity, and validates strictly
on load so a hand-edited or foreign file is refused, not half-used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from elp.config_parsing import build_strict
from elp.decoding.config import LanguageModelConfig, RescoringConfig
from elp.errors import ConfigError
from elp.heads.config import CompanionConfig, DecoderConfig, HeadConfig
from elp.tasks import get_task
from elp.text_intent.config import TextBranchConfig
from elp.tuners.e_adapter.config import EAdapterConfig
from elp.tuners.l_adapter.config import LAdapterConfig
from elp.tuners.p_adapter.config import PAdapterConfig

FORMAT_VERSION = 1
METHODS = ("elp", "el", "ep", "lp", "e", "l", "p", "none")


@dataclass
class AdapterSetConfig:
    """Everything needed to rebuild an adapter set and to serve it.

    ``labels``: class names (emotion, intent) in output order. ``vocab``: CTC symbols, index 0 the
    blank. ``slot_names``: for intents written ``action_object_location``. ``threshold``: the
    calibrated cosine threshold of a verification set; ``duration_thresholds``: its thresholds by the duration
    of the shorter clip of a pair, ``[[from_s, threshold], ...]`` ascending from 0 (``threshold`` then serves
    when no duration is known). ``weighted_sum_layers``: the layers the
    plain weighted sum reads when there are no L-adapters. ``language_model``: an ASR set's optional
    word LM for beam search (its tensors live in the weights file); without one, greedy decoding.
    ``text_branch``: an intent set's reader of the ASR transcript (``elp.text_intent``); None = acoustic only.
    ``decoder``: an ASR set's pretrained sequence decoder over the encoder's own output, in place of a
    CTC head (``elp.heads.seq2seq``); its weights and token table live in the weights file.
    ``companion``: a decoder label set's second classifier (``elp.heads.companion``); None = the decoder alone.
    ``rescoring``: an ASR set's second pass over its beam by the checkpoint's own decoder (``elp.decoding.rescoring``);
    None = the beam's best.
    """

    task: str
    backbone: dict[str, Any]
    method: str = "elp"
    e_adapter: EAdapterConfig | None = None
    l_adapter: LAdapterConfig | None = None
    p_adapter: PAdapterConfig | None = None
    head: HeadConfig = field(default_factory=HeadConfig)
    weighted_sum_layers: list[int] | None = None
    labels: list[str] | None = None
    vocab: list[str] | None = None
    slot_names: list[str] | None = None
    threshold: float | None = None
    duration_thresholds: list[list[float]] | None = None
    language_model: LanguageModelConfig | None = None
    text_branch: TextBranchConfig | None = None
    decoder: DecoderConfig | None = None
    companion: CompanionConfig | None = None
    rescoring: RescoringConfig | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    format_version: int = FORMAT_VERSION
    weights_sha256: str | None = None

    def __post_init__(self) -> None:
        spec = get_task(self.task)  # ConfigError for a task nobody registered
        if self.format_version != FORMAT_VERSION:
            raise ConfigError(f"adapter format version {self.format_version} is not {FORMAT_VERSION}")
        spec.validate(self)
        for key in ("model_type", "hidden_size", "num_layers", "fingerprint"):
            if key not in self.backbone:
                raise ConfigError(f"backbone identity lacks {key!r}")

    @property
    def num_outputs(self) -> int:
        """Outputs of the head: vocabulary size, embedding size or class count (the task says which)."""
        return get_task(self.task).num_outputs(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterSetConfig:
        """Strict: unknown keys anywhere are an error (a newer or foreign format)."""
        if not isinstance(data, dict):
            raise ConfigError("adapter config must be a JSON object")
        data = dict(data)
        kinds = {"e_adapter": EAdapterConfig, "l_adapter": LAdapterConfig, "p_adapter": PAdapterConfig}
        for key, kind in kinds.items():
            if data.get(key) is not None:
                data[key] = build_strict(kind, data[key], key)
        if "head" in data:
            data["head"] = build_strict(HeadConfig, data["head"], "head")
        if data.get("language_model") is not None:
            data["language_model"] = build_strict(LanguageModelConfig, data["language_model"], "language_model")
        if data.get("text_branch") is not None:
            data["text_branch"] = build_strict(TextBranchConfig, data["text_branch"], "text_branch")
        if data.get("decoder") is not None:
            data["decoder"] = build_strict(DecoderConfig, data["decoder"], "decoder")
        if data.get("companion") is not None:
            data["companion"] = build_strict(CompanionConfig, data["companion"], "companion")
        if data.get("rescoring") is not None:
            data["rescoring"] = build_strict(RescoringConfig, data["rescoring"], "rescoring")
        return build_strict(cls, data, "adapter config")


def config_for_method(
    method: str,
    task: str,
    backbone: dict[str, Any],
    *,
    labels: list[str] | None = None,
    vocab: list[str] | None = None,
    slot_names: list[str] | None = None,
    num_prompt_frames: int = 8,
    prompt_position: str = "prefix",
    prompt_form: str = "nonlinear",
    head: HeadConfig | None = None,
) -> AdapterSetConfig:
    """The adapter set of one of the paper's methods (``elp``, ``el``, ``e``, ``l``, ``p``, ...,
    ``none`` = head on the weighted layer sum); ``full`` fine-tuning uses ``none`` plus an
    unfrozen backbone and is a training mode, not an adapter set."""
    method = method.lower()
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    spec = get_task(task)
    activation = spec.activation
    parts = set() if method == "none" else set(method)
    return AdapterSetConfig(
        task=task,
        backbone=backbone,
        method=method,
        e_adapter=EAdapterConfig(activation=activation) if "e" in parts else None,
        l_adapter=LAdapterConfig(activation=activation) if "l" in parts else None,
        p_adapter=(
            PAdapterConfig(num_frames=num_prompt_frames, position=prompt_position, form=prompt_form)
            if "p" in parts
            else None
        ),
        head=head or HeadConfig(hidden_dim=spec.head_hidden_dim),
        labels=labels,
        vocab=vocab,
        slot_names=slot_names,
    )
