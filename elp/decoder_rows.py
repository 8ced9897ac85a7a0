"""What the rows of decoder sets (a pretrained seq2seq decoder as the head, ``AdapterSetConfig.decoder``)
need from the shared model beyond the other sets: trailing zeros, on an int8 encoder a float32 copy of
it, and on a CPU the int8-shortlisted vocabulary projection.

Kept apart from ``elp.model`` so the mixed-batch model reads the same for every other set: it asks this
object which encoder a call reads and what each row's waveform is, and tells it when sets come and go.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from elp.adapter_set import AdapterSet
from elp.backbones.base import Backbone
from elp.heads.prosody import SAMPLE_RATE

log = logging.getLogger(__name__)


def reads_float_copy(adapter_set: AdapterSet) -> bool:
    """Whether the set's rows read the float32 copy of a quantised encoder (``DecoderConfig.float32_encoder``)."""
    return adapter_set.config.decoder is not None and adapter_set.config.decoder.float32_encoder


class DecoderRows:
    """The float32 copy of a quantised encoder (one, shared by every decoder set), the rows' zeros, and
    each decoder set's shortlist on a CPU."""

    def __init__(self, backbone: Backbone) -> None:
        self.backbone = backbone
        self.float_copy: Backbone | None = None

    def added(self, key: str, adapter_set: AdapterSet, shortlist: bool = True) -> None:
        """A set was registered (already on the backbone's device). On an int8 encoder a decoder set's
        rows read a float32 copy of it (a pretrained decoder reads the encoder's output as it was trained
        on; int8 moves it enough to cost accuracy: asr-whisper card, human CER 7.2% -> 9.7%). Its token
        steps stay float32 (int8 ones changed 10-23% of validation transcripts: the card), except that
        the vocabulary projection shortlists in int8 and rescores in float32, which keeps its tokens."""
        if adapter_set.config.decoder is None:
            return
        if self.backbone.quantization and adapter_set.config.decoder.float32_encoder:
            self._add_float_copy(key)
        if shortlist and self.backbone.device.type == "cpu":
            self._add_shortlist(key, adapter_set)

    @staticmethod
    def _add_shortlist(key: str, adapter_set: AdapterSet) -> None:
        """On a CPU each greedy token comes from an int8 shortlist rescored in float32: the float32
        tokens at a fraction of the vocabulary projection's reads (``elp.heads.shortlist``)."""
        from elp.backbones.quantize import cpu_has_vnni, int8_kernels_work

        if (problem := int8_kernels_work()) is not None:
            log.info("adapter set %r: float32 vocabulary projection (no int8 kernels: %s)", key, problem)
            return
        adapter_set.head.use_int8_shortlist(full_range=cpu_has_vnni())

    def removed(self, remaining: Mapping[str, AdapterSet]) -> None:
        """Free the float32 copy with the last decoder set that reads it."""
        if not any(reads_float_copy(s) for s in remaining.values()):
            self.float_copy = None

    def _add_float_copy(self, key: str) -> None:
        from elp.backbones import float32_copy

        if self.float_copy is not None:
            return
        self.float_copy = float32_copy(self.backbone)
        if self.float_copy is None:
            log.warning("adapter set %r: no float32 copy of the %s encoder (source %r): its decoder reads the "
                        "quantised one and makes more errors; serve it with ELP_DTYPE=float32",
                        key, self.backbone.quantization, self.backbone.source)
            return
        log.info("adapter set %r reads a float32 copy of the %s encoder", key, self.backbone.quantization)

    def encoder_for(self, adapter_keys: list[str], adapter_sets: Mapping[str, AdapterSet]) -> Backbone:
        """The float32 copy for a call whose one row is a decoder set's that reads it, else the backbone."""
        if self.float_copy is not None and len(adapter_keys) == 1 and reads_float_copy(adapter_sets[adapter_keys[0]]):
            return self.float_copy
        return self.backbone

    def with_trailing_silence(self, waveforms: list[torch.Tensor], adapter_keys: list[str],
                              adapter_sets: Mapping[str, AdapterSet]) -> list[torch.Tensor]:
        """Rows of a decoder set end in the set's zeros (its decoder learnt on speech followed by
        padding), as many as fit in the encoder's window."""
        rows = []
        room = self.backbone.max_samples
        for waveform, key in zip(waveforms, adapter_keys, strict=True):
            decoder = adapter_sets[key].config.decoder
            zeros = round(decoder.trailing_silence_s * SAMPLE_RATE) if decoder is not None else 0
            if room is not None:
                zeros = max(0, min(zeros, room - waveform.shape[-1]))
            rows.append(F.pad(waveform, (0, zeros)) if zeros else waveform)
        return rows
