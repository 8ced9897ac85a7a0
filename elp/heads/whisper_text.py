"""Text of a Whisper decoder set's tokens: byte-level BPE ids -> the answer (``WhisperTranscriber``).

Kept apart from the head (``elp.heads.seq2seq``) because it runs in post-processing, on the ids alone.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from elp.spoken_text import normalise


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet (printable stand-ins for the 256 bytes), reversed."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes, strict=True)}


def token_bytes(token_id: int, tokens: list[str]) -> bytes:
    """The bytes one byte-level BPE token spells (empty for the specials)."""
    table = _byte_decoder()
    return bytes(table[c] for c in tokens[token_id] if c in table) if 0 <= token_id < len(tokens) else b""


def detokenize(token_ids: list[int], tokens: list[str]) -> str:
    """Text of byte-level BPE ids (ids outside ``tokens``, the specials, are skipped)."""
    return b"".join(token_bytes(i, tokens) for i in token_ids).decode("utf-8", errors="replace").strip()


class WhisperTranscriber:
    """One row's token ids (floats, -1 after its end) -> ``{"text": ...}``, in the spoken form unless
    the set says otherwise; a timed row (``timed``: ``WhisperDecoderHead.word_times``) also gives
    ``words`` with their spans and confidences. A set that detects each row's language (``languages``: the codes of
    ``DecoderConfig.language_ids``) starts the row with their probabilities: the answer then also holds ``label``
    (the detected code) and ``scores`` (code -> probability). Cheap: stays on the worker."""

    offload = False

    def __init__(self, tokens: list[str], spoken_form: bool = True, timed: bool = False,
                 languages: list[str] | None = None) -> None:
        self.tokens = tokens
        self.spoken_form = spoken_form
        self.timed = timed
        self.languages = list(languages or [])

    def __call__(self, output: torch.Tensor) -> dict[str, Any]:
        if self.languages:
            detected = self.detected_language(output[: len(self.languages)])
            return {**self.read(output[len(self.languages):]), **detected}
        return self.read(output)

    def detected_language(self, probabilities: torch.Tensor) -> dict[str, Any]:
        """``label`` (the most likely language) and ``scores`` (each language's probability)."""
        values = probabilities.float().tolist()
        best = max(range(len(values)), key=values.__getitem__)
        return {"label": self.languages[best], "scores": dict(zip(self.languages, values, strict=True))}

    def read(self, output: torch.Tensor) -> dict[str, Any]:
        """The text (and timed words) of the row's token part."""
        from elp.heads.word_timing import TIMED_PARTS, timed_words

        ids = output.view(TIMED_PARTS, -1)[0] if self.timed else output
        text = detokenize([int(token) for token in ids.tolist() if token >= 0], self.tokens)
        text = normalise(text) if self.spoken_form else text
        if not self.timed:
            return {"text": text}
        spell = normalise if self.spoken_form else str.strip
        words = timed_words(output, lambda token: token_bytes(token, self.tokens), spell, text)
        return {"text": text} if words is None else {"text": text, "words": words}
