"""E-adapters: bottleneck adapters inside the encoder layers, on the feed-forward output."""

from elp.tuners.e_adapter.config import EAdapterConfig
from elp.tuners.e_adapter.layer import EAdapter, EAdapterStack

__all__ = ["EAdapter", "EAdapterConfig", "EAdapterStack"]
