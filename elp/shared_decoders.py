"""One copy of a pretrained decoder for every resident set whose weights are the same bytes.

The setup writes ``asr-whisper`` and ``translate-whisper`` with identical weights (Whisper base's decoder, its
silence frames and tokens; hard-linked on disk). Loaded apart, a server that answered both held two ~200 MB
copies. A set loaded with ``share_decoder`` (the server's loads) whose weights hash and decoder tensors equal a
resident set's takes that set's decoder module, and its own copy is freed. Serving never writes to a decoder's
weights; a script that trained one set's decoder would change the other's, so the library shares only when asked.
"""

from __future__ import annotations

import threading
import weakref

import torch
from torch import nn

_LOCK = threading.Lock()
#: weights sha256 -> the decoder module of a resident set (gone with the last set that holds it)
_RESIDENT: weakref.WeakValueDictionary[str, nn.Module] = weakref.WeakValueDictionary()


def share_decoder(head: nn.Module, weights_sha256: str) -> bool:
    """Give ``head`` (a ``WhisperDecoderHead``) the resident decoder equal to its own, else make its own the
    resident one. True when it now shares. Equal means every tensor: same name, device and values, where a resident
    tensor cast to another float dtype since its load (the server casts every set to a 16-bit encoder's dtype) must
    equal its own cast the same way; one whose values changed since is not shared."""
    own = head.decoder
    with _LOCK:
        resident = _RESIDENT.get(weights_sha256)
        if resident is not None and resident is not own and _same_tensors(resident, own):
            head.decoder = resident
            return True
        _RESIDENT[weights_sha256] = own
        return False


def _same_tensors(resident: nn.Module, own: nn.Module) -> bool:
    first, second = resident.state_dict(), own.state_dict()
    if first.keys() != second.keys():
        return False
    return all(_same_tensor(first[name], second[name]) for name in first)


def _same_tensor(resident: torch.Tensor, own: torch.Tensor) -> bool:
    if resident.device != own.device or resident.shape != own.shape:
        return False
    if resident.dtype != own.dtype:  # cast since its load: equal if ours, cast the same way, is bit for bit
        if not (resident.is_floating_point() and own.is_floating_point()):
            return False
        own = own.to(resident.dtype)
    return torch.equal(resident, own)
