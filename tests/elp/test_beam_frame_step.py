"""The beam search's frame step (``_extend_beams``, written out for speed) gives the very floats of the plain
formulation it replaced: every path log-summed into its prefix with ``_logaddexp``, in the same order."""

from __future__ import annotations

import math
import random

import pytest

from elp.decoding.beam import NEG_INF, _extend_beams, _logaddexp

SPACE = 1
VOCAB = ["_", " ", "a", "b", "c"]


def plain_frame_step(beams: dict[str, tuple[float, float]], candidates: list[tuple[int, float, str]],
                     space: int) -> dict[str, list[float]]:
    """The search's frame step as first written (one ``_add`` per path)."""
    nxt: dict[str, list[float]] = {}

    def add(prefix: str, blank: float, symbol: float) -> None:
        slot = nxt.setdefault(prefix, [NEG_INF, NEG_INF])
        slot[0] = _logaddexp(slot[0], blank)
        slot[1] = _logaddexp(slot[1], symbol)

    for prefix, (b, n) in beams.items():
        total = _logaddexp(b, n)
        last = prefix[-1] if prefix else ""
        for index, p, char in candidates:
            if index == 0:
                add(prefix, total + p, NEG_INF)
            elif index == space and last in ("", " "):
                add(prefix, NEG_INF, total + p)
            elif last == char:
                add(prefix, NEG_INF, n + p)
                add(prefix + char, NEG_INF, b + p)
            else:
                add(prefix + char, NEG_INF, total + p)
    return nxt


@pytest.mark.parametrize("seed", range(20))
def test_the_written_out_frame_step_equals_the_plain_one_bit_for_bit(seed: int) -> None:
    rng = random.Random(seed)
    beams: dict[str, tuple[float, float]] = {}
    for _ in range(rng.randint(1, 12)):
        prefix = "".join(rng.choice(" abc") for _ in range(rng.randint(0, 5))).lstrip()
        blank = NEG_INF if rng.random() < 0.3 else -rng.uniform(0, 30)
        symbol = NEG_INF if rng.random() < 0.3 or not prefix else -rng.uniform(0, 30)
        beams[prefix] = (blank, symbol)
    indices = rng.sample(range(len(VOCAB)), rng.randint(1, len(VOCAB)))
    candidates = [(i, math.log(rng.uniform(1e-4, 1.0)), VOCAB[i]) for i in indices]
    written_out, plain = _extend_beams(beams, candidates, SPACE), plain_frame_step(beams, candidates, SPACE)
    assert list(written_out) == list(plain)  # the same prefixes in the same order (ties in the top-k)
    assert written_out == plain  # the same floats, not merely close ones
