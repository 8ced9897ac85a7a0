"""An adapter set: E-adapters + L-adapters (or weighted layer sum) + P-adapter + head + metadata.

On disk it is one folder holding ``adapter_config.json`` and ``adapter_model.safetensors``: data,
never pickle (the format and the version hash: ``elp.adapter_files``). Loading is strict: the
config is validated, the weights' sha256 must match the one recorded in the config, and the tensor
names and shapes must be exactly those the config implies, so a truncated, tampered or mismatched
set raises ``AdapterFormatError`` before it can be used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from elp.adapter_files import CONFIG_NAME, WEIGHTS_NAME, write_adapter_files
from elp.backbones.base import Backbone, BackboneIdentity
from elp.config import AdapterSetConfig
from elp.decoding.bigram import WordBigramLM
from elp.errors import AdapterFormatError, ConfigError
from elp.heads.companion import CompanionClassifier
from elp.heads.config import HeadConfig
from elp.tasks import PostProcessor, TaskSpec, get_task
from elp.tensor_file import parse_safetensors
from elp.text_intent.branch import TextBranch
from elp.tuners.e_adapter import EAdapterStack
from elp.tuners.l_adapter import LAdapterStack, WeightedLayerSum
from elp.tuners.p_adapter import PAdapter

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "AdapterSet", "update_digest"]

# LayerNorm attribute names per family, so a set can be rebuilt without loading its backbone.
_LAYER_NORM_NAMES = {
    "whisper": ("self_attn_layer_norm", "final_layer_norm"),
    "wav2vec2": ("layer_norm", "final_layer_norm"),
    "hubert": ("layer_norm", "final_layer_norm"),
    "wavlm": ("layer_norm", "final_layer_norm"),
}


def update_digest(digest: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Feed named tensors (name, dtype, shape and bytes, in name order) into ``digest``; returns it."""
    for name, tensor in sorted(tensors.items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest


class AdapterSet(nn.Module):
    """The trained parameters of one task on one backbone. Build with :meth:`create` (fresh, for
    training) or :meth:`load` (from disk); ``config`` is always fully resolved (no size left None)."""

    def __init__(self, config: AdapterSetConfig, *, initialise: bool = True) -> None:
        """``initialise=False``: the caller loads every weight next (``from_bytes``), so a pretrained decoder
        skips its random initialisation (0.47 s of a Whisper base decoder set's 0.77 s load)."""
        super().__init__()
        identity = BackboneIdentity.from_dict(config.backbone)
        hidden, layers = identity.hidden_size, identity.num_layers
        self.config = config
        self.e_adapters: EAdapterStack | None = None
        self.p_adapter: PAdapter | None = None
        if config.e_adapter is not None:
            config.e_adapter = config.e_adapter.resolve(hidden, layers)
            norm_names = list(_LAYER_NORM_NAMES.get(identity.model_type, ()))
            self.e_adapters = EAdapterStack(config.e_adapter, hidden, norm_names)
        if config.p_adapter is not None:
            config.p_adapter = config.p_adapter.resolve(hidden)
            self.p_adapter = PAdapter(config.p_adapter, hidden)
        self.featurizer: LAdapterStack | WeightedLayerSum
        if config.l_adapter is not None:
            config.l_adapter = config.l_adapter.resolve(hidden, layers)
            self.featurizer = LAdapterStack(config.l_adapter, hidden)
        else:
            if config.weighted_sum_layers is None:
                config.weighted_sum_layers = list(range(1, layers + 1))
            bad = [i for i in config.weighted_sum_layers if not 0 <= i <= layers]
            if bad:
                raise ConfigError(f"weighted_sum_layers {bad} outside 0..{layers}")
            # a pretrained decoder reads the encoder's output exactly as the encoder made it
            self.featurizer = WeightedLayerSum(config.weighted_sum_layers, hidden, normalize=config.decoder is None)
        self.head: nn.Module
        if config.decoder is not None:
            from elp.heads.seq2seq import WhisperDecoderHead

            self.head = WhisperDecoderHead(config.decoder, hidden, initialise=initialise)
        else:
            self.head = self.task_spec.build_head(config.head, self.featurizer.output_dim, config.num_outputs,
                                                  labels=config.labels, slot_names=config.slot_names)
        self.companion: CompanionClassifier | None = None
        if config.companion is not None:
            spec, labels = self.task_spec, config.labels

            def build_head(head: HeadConfig, width: int, outputs: int) -> nn.Module:
                return spec.build_head(head, width, outputs, labels=labels, slot_names=None)

            self.companion = CompanionClassifier(config.companion, hidden, config.num_outputs, build_head)
        self.language_model = WordBigramLM(config.language_model) if config.language_model is not None else None
        self.text_branch: TextBranch | None = None
        if config.text_branch is not None:
            config.text_branch.l_adapter = config.text_branch.l_adapter.resolve(hidden, layers)
            self.text_branch = TextBranch(config.text_branch, hidden, config.labels or [], config.slot_names or [])
        #: the checkpoint a rescoring set's decoder is read from: the backbone's folder, set when a model takes
        #: the set (``MultiAdapterModel.add_adapter_set``); None: the beam's best is answered
        self.rescorer_source: str | None = None
        #: the pass its decoder runs (``elp.decoding.rescoring.DTYPES``) and the encoder precision beside it (None:
        #: unknown), chosen when served: together they pick the set's setting (``RescoringConfig.at_precision``)
        self.rescorer_dtype = "float32"
        self.rescorer_encoder: str | None = None
        self._post_processor: PostProcessor | None = None

    # ----------------------------------------------------------------- construction
    @classmethod
    def create(cls, config: AdapterSetConfig, backbone: Backbone) -> AdapterSet:
        """A fresh set for ``backbone``: E near identity, per-set LayerNorms copied from the backbone."""
        config.backbone = backbone.identity.to_dict()
        adapter_set = cls(config)
        if adapter_set.e_adapters is not None and adapter_set.e_adapters.layer_norms:
            layers = backbone.encoder_layers()
            norms = {
                f"{i}_{name}": norm
                for i in adapter_set.e_adapters.config.layers or []
                for name, norm in backbone.layer_norms(layers[i]).items()
            }
            adapter_set.e_adapters.copy_layer_norms_from(norms)
        return adapter_set.to(backbone.device)

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def task_spec(self) -> TaskSpec:
        return get_task(self.config.task)

    @property
    def backbone_identity(self) -> BackboneIdentity:
        return BackboneIdentity.from_dict(self.config.backbone)

    @property
    def has_backbone_changes(self) -> bool:
        """True when the set alters the backbone pass itself (E or P); else it can share a plain pass."""
        return self.e_adapters is not None or self.p_adapter is not None

    def backbone_change_state(self) -> dict[str, torch.Tensor]:
        """The E- and P-adapter tensors (state-dict names): everything that alters the backbone pass."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(("e_adapters.", "p_adapter."))}

    def backbone_change_signature(self) -> str | None:
        """sha256 of the E- and P-adapters (configs and tensors); None when the set changes nothing.

        Two sets with the same signature alter the backbone pass identically (an intent set started
        from the ASR set's adapters, say), so a mixed batch can route their rows as one group."""
        if not self.has_backbone_changes:
            return None
        digest = hashlib.sha256()
        for part in (self.config.e_adapter, self.config.p_adapter):
            digest.update(json.dumps(asdict(part) if part is not None else None, sort_keys=True).encode())
        return update_digest(digest, self.backbone_change_state()).hexdigest()

    def attach_language_model(self, language_model: WordBigramLM | None) -> None:
        """Decode with ``language_model`` from now on (None: greedy); saved with the set."""
        if language_model is not None and not self.task_spec.supports_language_model:
            raise ConfigError(f"a {self.task} adapter set cannot carry a language model")
        self.language_model = language_model
        self.config.language_model = language_model.config if language_model is not None else None
        self._post_processor = None

    def refresh_post_processor(self) -> None:
        """Build the post-processor again on next use (the head's output changed form, e.g. timed rows)."""
        self._post_processor = None

    @property
    def post_processor(self) -> PostProcessor:
        """The task's post-processing of one row's head output into answer fields (built once)."""
        if self._post_processor is None:
            self._post_processor = self.task_spec.post_processor(self)
        return self._post_processor

    def decode_ctc(self, log_probs: torch.Tensor) -> str:
        """Transcript of one clip's CTC log-probabilities (an ASR set's post-processing): beam search
        under the set's LM if it has one, else best path."""
        return self.post_processor(log_probs)["text"]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def size_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.state_dict().values())

    def tensor_storages(self) -> dict[int, int]:
        """The memory its tensors occupy, by storage: address -> bytes. Sets that share a module (a pretrained decoder,
        ``elp.shared_decoders``) share these entries, so a cache that sums the union counts it once."""
        storages = {}
        for tensor in self.state_dict().values():
            if isinstance(tensor, torch.Tensor):  # a quantised module's state also holds dtypes and packed tuples
                storage = tensor.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
        return storages

    def parameter_report(self) -> dict[str, int]:
        """Trained parameters per component (E, L or weighted sum, P, head)."""
        report = {
            "e_adapters": sum(p.numel() for p in self.e_adapters.parameters()) if self.e_adapters else 0,
            "l_adapters" if isinstance(self.featurizer, LAdapterStack) else "weighted_sum": sum(
                p.numel() for p in self.featurizer.parameters()
            ),
            "p_adapter": sum(p.numel() for p in self.p_adapter.parameters()) if self.p_adapter else 0,
            "head": sum(p.numel() for p in self.head.parameters()),
        }
        if self.text_branch is not None:  # frozen copies of the ASR set's L-adapters and CTC head
            report["text_branch"] = sum(p.numel() for p in self.text_branch.parameters())
        report["total"] = sum(report.values())
        return report

    # ----------------------------------------------------------------- save / load
    def to_bytes(self) -> tuple[bytes, bytes]:
        """(config JSON, safetensors) with the weights' sha256 recorded in the config."""
        if getattr(self.head, "quantized", False):
            raise ConfigError("this set's decoder runs in int8 for serving and has no float weights to save; "
                              "save the set as loaded from its folder")
        tensors = {name: t.detach().to("cpu").contiguous() for name, t in self.state_dict().items()}
        weights = save_safetensors_bytes(tensors, metadata={"format": "elp-adapter-set"})
        self.config.weights_sha256 = hashlib.sha256(weights).hexdigest()
        config = json.dumps(self.config.to_dict(), indent=2, sort_keys=True).encode()
        return config, weights

    def save(self, folder: str | Path) -> Path:
        """Write the folder (``elp.adapter_files.write_adapter_files``: never a partial file)."""
        return write_adapter_files(folder, *self.to_bytes())

    @classmethod
    def from_bytes(cls, config_bytes: bytes, weights_bytes: bytes, device: str | torch.device = "cpu",
                   share_decoder: bool = False) -> AdapterSet:
        """Parse a set from bytes already read (the server hashes exactly what it parses). ``share_decoder``: a
        pretrained decoder equal to a resident set's is that set's module, not a second copy (``elp.shared_decoders``;
        the server's loads)."""
        try:
            config = AdapterSetConfig.from_dict(json.loads(config_bytes))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AdapterFormatError(f"{CONFIG_NAME} is not valid JSON: {exc}") from exc
        except ConfigError as exc:
            raise AdapterFormatError(f"{CONFIG_NAME} is invalid: {exc}") from exc
        if config.weights_sha256 is None:
            raise AdapterFormatError(f"{CONFIG_NAME} records no weights_sha256")
        actual = hashlib.sha256(weights_bytes).hexdigest()
        if actual != config.weights_sha256:
            raise AdapterFormatError(
                f"{WEIGHTS_NAME} does not match its config (sha256 {actual[:12]}..., expected "
                f"{config.weights_sha256[:12]}...): truncated, tampered with, or from another set"
            )
        try:  # views of weights_bytes: load_state_dict below makes the only copy
            tensors = parse_safetensors(weights_bytes)
        except ValueError as exc:
            raise AdapterFormatError(f"{WEIGHTS_NAME} is not a readable safetensors file: {exc}") from exc
        try:
            adapter_set = cls(config, initialise=False)  # strict load_state_dict below sets every value
        except ConfigError as exc:
            raise AdapterFormatError(f"{CONFIG_NAME} is invalid: {exc}") from exc
        expected = {name: tuple(t.shape) for name, t in adapter_set.state_dict().items()}
        found = {name: tuple(t.shape) for name, t in tensors.items()}
        missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        if missing or unexpected:
            raise AdapterFormatError(f"weights do not match config: missing {missing[:5]}, unexpected {unexpected[:5]}")
        wrong = [f"{n}: {found[n]} != {expected[n]}" for n in expected if found[n] != expected[n]]
        if wrong:
            raise AdapterFormatError(f"weights have wrong shapes: {wrong[:5]}")
        adapter_set.load_state_dict(tensors, strict=True)
        for module in adapter_set.modules():  # the compiled search reads an LM's trigram level unchecked: check it now
            if isinstance(module, WordBigramLM):
                try:
                    module.trigram_arrays()
                except ConfigError as exc:
                    raise AdapterFormatError(f"{WEIGHTS_NAME}: {exc}") from exc
        adapter_set = adapter_set.to(device).eval()
        if share_decoder and config.decoder is not None:
            from elp.shared_decoders import share_decoder as share

            share(adapter_set.head, config.weights_sha256)
        return adapter_set

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> AdapterSet:
        folder = Path(folder)
        try:
            config_bytes = (folder / CONFIG_NAME).read_bytes()
            weights_bytes = (folder / WEIGHTS_NAME).read_bytes()
        except OSError as exc:
            raise AdapterFormatError(f"cannot read adapter set in {folder}: {exc}") from exc
        return cls.from_bytes(config_bytes, weights_bytes, device)
