"""ELP adapter library: one frozen speech encoder, small per-task adapter sets, mixed batches.

Both the training recipe and the server import this package; it imports neither. Names are
imported on first use (PEP 562), so ``elp.tasks`` (the task registry) stays importable without
torch: the HTTP client reads its routes and answer models from it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elp.adapter_set import CONFIG_NAME, WEIGHTS_NAME, AdapterSet
    from elp.backbones import SUPPORTED_MODEL_TYPES, Backbone, BackboneIdentity, load_backbone
    from elp.config import METHODS, AdapterSetConfig, config_for_method
    from elp.errors import AdapterFormatError, BackboneLoadError, BackboneMismatchError, ConfigError, ELPError
    from elp.model import EncoderOutput, GroupOutput, MultiAdapterModel, Prediction, RowOutput, pad_waveforms

_WHERE = {
    "elp.adapter_set": ("CONFIG_NAME", "WEIGHTS_NAME", "AdapterSet"),
    "elp.backbones": ("SUPPORTED_MODEL_TYPES", "Backbone", "BackboneIdentity", "load_backbone"),
    "elp.config": ("METHODS", "AdapterSetConfig", "config_for_method"),
    "elp.errors": ("AdapterFormatError", "BackboneLoadError", "BackboneMismatchError", "ConfigError", "ELPError"),
    "elp.model": ("EncoderOutput", "GroupOutput", "MultiAdapterModel", "Prediction", "RowOutput", "pad_waveforms"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "CONFIG_NAME",
    "METHODS",
    "SUPPORTED_MODEL_TYPES",
    "WEIGHTS_NAME",
    "AdapterFormatError",
    "AdapterSet",
    "AdapterSetConfig",
    "Backbone",
    "BackboneIdentity",
    "BackboneLoadError",
    "BackboneMismatchError",
    "ConfigError",
    "ELPError",
    "EncoderOutput",
    "GroupOutput",
    "MultiAdapterModel",
    "Prediction",
    "RowOutput",
    "config_for_method",
    "load_backbone",
    "pad_waveforms",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'elp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
