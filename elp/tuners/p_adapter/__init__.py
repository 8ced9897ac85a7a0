"""P-adapter: K learnable pseudo frames concatenated to the front-end features (ELP.md)."""

from elp.tuners.p_adapter.config import PAdapterConfig
from elp.tuners.p_adapter.layer import PAdapter

__all__ = ["PAdapter", "PAdapterConfig"]
