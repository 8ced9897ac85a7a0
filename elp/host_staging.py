"""Padded batches for a CUDA device staged in pinned (page-locked) host memory.

A copy from ordinary (pageable) memory makes the driver stage it through its own pinned buffer and
blocks the calling thread; from pinned memory the copy is one DMA that ``non_blocking=True`` queues
behind the stream's work. Pinning is slow (a driver call per allocation), so each thread keeps one
buffer and grows it only when a batch is larger than any before. On a CPU nothing here is used.

``upload_indices`` and ``copy_home`` do the same for the model stage's small transfers: one copy per
batch instead of one per adapter set (``benchmarks.model_stage`` counts the synchronisations).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch


class PinnedBatchStaging:
    """``upload(waveforms, device)``: the padded batch and its lengths on ``device``, copied from a
    per-thread pinned buffer without blocking the thread (each server worker thread has its own)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def upload(self, waveforms: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = [int(wave.shape[-1]) for wave in waveforms]
        self._wait_for_last_copy()
        batch = self._buffer("samples", len(waveforms) * max(lengths), torch.float32).zero_()
        batch = batch.view(len(waveforms), max(lengths))
        for row, wave in enumerate(waveforms):
            batch[row, : lengths[row]] = wave.detach().reshape(-1)
        host_lengths = self._buffer("lengths", len(lengths), torch.long)
        host_lengths.copy_(torch.tensor(lengths, dtype=torch.long))
        on_device = batch.to(device, non_blocking=True), host_lengths.to(device, non_blocking=True)
        # These buffers may not be written again until the copies have read them: the next upload waits.
        self._local.copied = torch.cuda.Event()
        self._local.copied.record(torch.cuda.current_stream(device))
        return on_device

    def _wait_for_last_copy(self) -> None:
        copied = getattr(self._local, "copied", None)
        if copied is not None:
            copied.synchronize()

    def _buffer(self, name: str, numel: int, dtype: torch.dtype) -> torch.Tensor:
        buffer = getattr(self._local, name, None)
        if buffer is None or buffer.numel() < numel:
            # a normal tensor even when first asked for under inference mode, so that later uploads
            # outside it may still write into the buffer
            with torch.inference_mode(False):
                buffer = torch.empty(numel, dtype=dtype, pin_memory=True)
            setattr(self._local, name, buffer)
        return buffer[:numel]


def upload_indices(lists: Sequence[Sequence[int]], device: torch.device) -> list[torch.Tensor]:
    """Small integer lists (row indices, counts) as long tensors on ``device``, in one copy: on a GPU,
    ``torch.tensor(rows, device=...)`` for each list would be a blocking copy each; one pinned,
    non-blocking copy queues behind the stream's work instead."""
    sizes = [len(values) for values in lists]
    flat = torch.tensor([value for values in lists for value in values], dtype=torch.long)
    if device.type == "cuda":
        flat = flat.pin_memory().to(device, non_blocking=True)  # the caching host allocator keeps it alive
    return list(torch.split(flat, sizes))


def copy_home(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """float32 host copies of ``tensors`` with one device-to-host copy per device, not one per tensor
    (each copy home waits for the GPU's queue to drain). On a CPU, the tensors as float32."""
    home: list[torch.Tensor | None] = [None] * len(tensors)
    by_device: dict[torch.device, list[int]] = {}
    for position, tensor in enumerate(tensors):
        by_device.setdefault(tensor.device, []).append(position)
    for device, positions in by_device.items():
        if device.type == "cpu":
            for position in positions:
                home[position] = tensors[position].float()
            continue
        flat = torch.cat([tensors[position].float().reshape(-1) for position in positions]).cpu()
        parts = torch.split(flat, [tensors[position].numel() for position in positions])
        for position, part in zip(positions, parts, strict=True):
            home[position] = part.view(tensors[position].shape)
    return home  # type: ignore[return-value]
