"""Gathered routing of E-adapters and per-set LayerNorms in a mixed batch (``MultiAdapterModel``).

Per-group routing runs each set's module on that set's rows, so the number of operators a batch
dispatches grows with the sets in it (on an H200 a 4-set batch of 8 cost 1.8x a 1-set batch). Here
each row's weights are indexed out of the sets' stacked weights and one batched matmul per
projection serves every row (the multi-LoRA "BGMV" idea): the operator count no longer depends on
how many sets share the batch. The stacks are kept between batches (``WeightStacks``), so a batch
pays only for the per-row gathers and the arithmetic.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from elp.tuners.e_adapter.layer import EAdapter

Entries = list[tuple[torch.Tensor, nn.Module | None]]


class WeightStacks:
    """Stacked copies of adapter weights, reused while the weights are unchanged.

    Keyed by each tensor's identity, storage address and in-place version counter, so a set
    replaced, moved to another device or trained in place is restacked, never served stale (the
    weak references catch an id reused by a new tensor). Least recently used stacks go first once
    they pass ``max_bytes``.
    """

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.misses = 0
        self._stacks: OrderedDict[tuple, tuple[list[weakref.ref], torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()  # several model workers may run batches at once

    def get(self, tensors: Sequence[torch.Tensor], zero_slot: bool, dtype: torch.dtype) -> torch.Tensor:
        """``tensors`` stacked along a new first dimension (plus an all-zero slot), in ``dtype``."""
        key = (tuple((id(t), t.data_ptr(), t._version) for t in tensors), zero_slot, dtype)
        with self._lock:
            hit = self._stacks.get(key)
            if hit is not None and all(ref() is t for ref, t in zip(hit[0], tensors, strict=True)):
                self._stacks.move_to_end(key)
                return hit[1]
        parts = [t.detach().to(dtype) for t in tensors]
        if zero_slot:
            parts.append(torch.zeros_like(parts[0]))
        stacked = torch.stack(parts)
        with self._lock:
            self.misses += 1
            if key in self._stacks:
                self.bytes -= self._stacks.pop(key)[1].nbytes
            self._stacks[key] = ([weakref.ref(t) for t in tensors], stacked)
            self.bytes += stacked.nbytes
            while self.bytes > self.max_bytes and len(self._stacks) > 1:
                self.bytes -= self._stacks.popitem(last=False)[1][1].nbytes
        return stacked

    def clear(self) -> None:
        with self._lock:
            self._stacks.clear()
            self.bytes = 0


def row_slots(batch: int, entries: Entries, device: torch.device) -> tuple[torch.Tensor, bool]:
    """Each row's slot in the stacked weights: the rank of its group among the groups that have a
    module here (route groups are distinct, so are their modules), then one identity slot for rows
    that no module covers (sets without E-adapters here, or without backbone changes)."""
    covered = [rows for rows, module in entries if module is not None]
    slot = torch.full((batch,), len(covered), dtype=torch.long, device=device)
    for rank, rows in enumerate(covered):
        slot[rows] = rank
    return slot, sum(len(rows) for rows in covered) < batch


def gathered_apply(source: torch.Tensor, entries: Entries, identity: nn.LayerNorm | None,
                   slots: tuple[torch.Tensor, bool], stacks: WeightStacks) -> torch.Tensor | None:
    """Every row through its own set's E-adapter or LayerNorm copy with gathered weights and batched
    matmuls; None when the modules cannot share one computation (the per-group path runs then)."""
    slot, uncovered = slots
    modules = [module for _, module in entries if module is not None]
    dtype = source.dtype
    first = modules[0]
    if isinstance(first, nn.LayerNorm):
        norms = [*modules, identity] if uncovered else modules  # uncovered rows keep the backbone norm
        if any(not isinstance(m, nn.LayerNorm) or m.weight is None or m.bias is None
               or (m.normalized_shape, m.eps) != (first.normalized_shape, first.eps) for m in norms):
            return None
        normed = F.layer_norm(source, first.normalized_shape, None, None, first.eps)
        weight = stacks.get([m.weight for m in norms], False, dtype)[slot]
        bias = stacks.get([m.bias for m in norms], False, dtype)[slot]
        return torch.addcmul(bias.unsqueeze(1), normed, weight.unsqueeze(1))
    if not isinstance(first, EAdapter) or any(
        not isinstance(m, EAdapter) or m.down.out_features != first.down.out_features or m.norm.eps != first.norm.eps
        for m in modules
    ):
        return None
    adapters: list[EAdapter] = modules  # type: ignore[assignment]

    def gathered(tensors: list[torch.Tensor]) -> torch.Tensor:
        # The identity slot: zero weights and a zero LayerNorm gain give g_E(X) = 0 + X.
        return stacks.get(tensors, uncovered, dtype)[slot]

    down_w = gathered([a.down.weight for a in adapters])  # (B, r, D)
    down_b = gathered([a.down.bias for a in adapters])  # (B, r)
    up_w = gathered([a.up.weight for a in adapters])  # (B, D, r)
    up_b = gathered([a.up.bias for a in adapters])  # (B, D)
    gain = gathered([a.norm.weight for a in adapters])
    shift = gathered([a.norm.bias for a in adapters])
    hidden = torch.baddbmm(down_b.unsqueeze(1), source, down_w.transpose(1, 2))
    activations = list({type(a.act): a.act for a in adapters}.values())
    if len(activations) == 1:
        hidden = activations[0](hidden)
    else:  # sets with other activations: each kind over every row, each row keeps its own set's
        types = [type(act) for act in activations]
        extra = [0] if uncovered else []
        kind = torch.tensor([types.index(type(a.act)) for a in adapters] + extra, device=source.device)[slot]
        hidden = torch.stack([act(hidden) for act in activations])[kind, torch.arange(len(kind), device=kind.device)]
    up = torch.baddbmm(up_b.unsqueeze(1), hidden, up_w.transpose(1, 2))
    normed = F.layer_norm(up, first.norm.normalized_shape, None, None, first.norm.eps)
    return torch.addcmul(shift.unsqueeze(1), normed, gain.unsqueeze(1)) + source
