"""ELP adapter library: one frozen speech encoder, small per-task adapter sets, mixed batches.

Both the training recipe and the server import this package; it imports neither.
"""

from elp.adapter_set import CONFIG_NAME, WEIGHTS_NAME, AdapterSet
from elp.backbones import SUPPORTED_MODEL_TYPES, Backbone, BackboneIdentity, load_backbone
from elp.config import METHODS, AdapterSetConfig, config_for_method
from elp.errors import AdapterFormatError, BackboneLoadError, BackboneMismatchError, ConfigError, ELPError
from elp.model import EncoderOutput, GroupOutput, MultiAdapterModel, Prediction, pad_waveforms

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
    "config_for_method",
    "load_backbone",
    "pad_waveforms",
]
