"""Typed errors of the model library.

The server maps these to HTTP status codes; training maps them to clear CLI messages. Nothing in the
library raises a bare ``ValueError`` for a problem a user can cause with a file on disk.
"""

from __future__ import annotations


class ELPError(Exception):
    """Base class of every error the ELP library raises on purpose."""


class ConfigError(ELPError, ValueError):
    """An adapter or head configuration is inconsistent (caught before any tensor is built)."""


class RescorerUnavailableError(ConfigError):
    """A set's second pass (``elp.decoding.rescoring``) needs the backbone checkpoint's decoder and tokenizer, and
    the folder the backbone was loaded from lacks them."""


class AdapterFormatError(ELPError):
    """An adapter-set folder is missing, truncated, tampered with or does not match its config."""


class BackboneMismatchError(ELPError):
    """An adapter set was trained for another backbone (type, size, depth or weights differ)."""


class BackboneLoadError(ELPError):
    """A backbone could not be loaded or is of an unsupported architecture."""


class AudioError(ELPError):
    """A clip cannot be model input: undecodable, empty, non-finite or far out of range."""
