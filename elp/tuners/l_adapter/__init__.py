"""L-adapters: a path from every encoder layer to the head, softmax-weighted (ELP.md)."""

from elp.tuners.l_adapter.config import LAdapterConfig
from elp.tuners.l_adapter.layer import LAdapterStack, WeightedLayerSum

__all__ = ["LAdapterConfig", "LAdapterStack", "WeightedLayerSum"]
