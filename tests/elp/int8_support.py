"""What an int8 test may assert on this CPU.

Without VNNI (AVX2 only), fbgemm sums pairs of u8 x s8 products in saturating int16, so 8-bit
("full-range") activations saturate and only 7-bit ones are exact; the library picks 7 bits there itself
(``cpu_has_vnni``: ``ELP_DTYPE=auto`` stays float32, the decoder shortlist uses 7 bits). Tests that assert
full-range accuracy are for VNNI CPUs; on others they are skipped, and bounds set for 8-bit activations
are widened to what 7-bit ones give (measured on an AVX2 AMD EPYC, 2026-12-07).
"""

from __future__ import annotations

import pytest

from elp.backbones.quantize import cpu_has_vnni

VNNI = cpu_has_vnni()
needs_vnni = pytest.mark.skipif(not VNNI, reason="full-range int8 activations need VNNI (int16 saturation here)")
