"""CTC beam search in worker processes, off the model worker thread.

The LM beam search is pure Python (~25 ms of one core per 2 s clip) and holds the GIL: run on the
model worker thread it keeps a GPU idle between batches, and run in a thread beside it, it would
steal the GIL the worker needs to launch kernels. Here each process of the pool decodes whole
clips. Processes are single-worker executors chosen round-robin, so the parent knows which
language models each one already holds and ships a set's vocabulary and LM tensors (~1 MB, as
numpy arrays: data, not code) only on a process's first clip of that set. A process that dies
fails only the clips it held; the next clip starts a fresh one.

Opt-in (``ELP_BEAM_SEARCH_PROCESSES``, default 0 = decode on the worker thread): on a CPU-only
machine the search competes for the same cores as the encoder, and every process costs memory.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import multiprocessing
import threading
from collections import OrderedDict
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from typing import Any

import numpy as np

#: language models each process keeps (parent and child evict in the same order)
_LM_SLOTS = 16

# -- child side ----------------------------------------------------------------------------------
_decoders: OrderedDict[str, Any] = OrderedDict()


def _decode_in_child(fingerprint: str, spec: dict[str, Any] | None, log_probs: np.ndarray) -> str:
    if spec is not None:
        import torch

        from elp.decoding import LanguageModelConfig, WordBigramLM
        from elp.decoding.beam import CTCBeamDecoder

        lm = WordBigramLM(LanguageModelConfig(**spec["config"]))
        lm.load_state_dict({name: torch.from_numpy(array) for name, array in spec["tensors"].items()})
        _decoders[fingerprint] = CTCBeamDecoder(spec["vocab"], lm)
    decoder = _decoders.get(fingerprint)
    if decoder is None:  # the parent's bookkeeping and ours disagree: a bug, not a user error
        raise RuntimeError(f"beam-search process has no decoder {fingerprint[:12]}")
    _decoders.move_to_end(fingerprint)
    while len(_decoders) > _LM_SLOTS:
        _decoders.popitem(last=False)
    return decoder.decode(log_probs)


def _warm_up() -> None:
    import elp.decoding.beam  # noqa: F401 - torch and the decoder, imported before the first clip


# -- parent side ---------------------------------------------------------------------------------
def decoder_fingerprint(adapter_set: Any) -> str:
    """Identity of a set's decoder: its vocabulary, LM configuration and weights file hash."""
    config = adapter_set.config
    digest = hashlib.sha256()
    digest.update(json.dumps([config.vocab, asdict(config.language_model)], sort_keys=True).encode())
    digest.update(str(config.weights_sha256 or id(adapter_set.language_model)).encode())
    return digest.hexdigest()


def decoder_spec(adapter_set: Any) -> dict[str, Any]:
    language_model = adapter_set.language_model
    return {
        "vocab": list(adapter_set.config.vocab),
        "config": asdict(language_model.config),
        "tensors": {name: t.detach().cpu().numpy() for name, t in language_model.state_dict().items()},
    }


class _Process:
    """One single-worker executor and the decoders it holds, in the order it last used them."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.lock = threading.RLock()  # a done-callback may run inside submit
        self.executor: ProcessPoolExecutor | None = None
        self.holds: OrderedDict[str, None] = OrderedDict()

    def start(self) -> None:
        """Spawn now (interpreter + torch import take seconds), not on the first request."""
        with self.lock:
            if self.executor is None:
                self.executor = ProcessPoolExecutor(1, mp_context=self.context)
                self.holds.clear()
            self.executor.submit(_warm_up)

    def submit(self, fingerprint: str, spec_for: Any, log_probs: np.ndarray) -> Future:
        with self.lock:
            for attempt in range(2):
                if self.executor is None:
                    self.executor = ProcessPoolExecutor(1, mp_context=self.context)
                    self.holds.clear()
                spec = None if fingerprint in self.holds else spec_for()
                try:
                    future = self.executor.submit(_decode_in_child, fingerprint, spec, log_probs)
                except BrokenProcessPool:  # died since its last clip: start a fresh one, once
                    self._discard()
                    if attempt:
                        raise
                    continue
                self.holds[fingerprint] = None
                self.holds.move_to_end(fingerprint)
                while len(self.holds) > _LM_SLOTS:
                    self.holds.popitem(last=False)
                future.add_done_callback(functools.partial(self._check, executor=self.executor))
                return future
        raise AssertionError("unreachable")

    def _check(self, future: Future, executor: ProcessPoolExecutor) -> None:
        if not future.cancelled() and isinstance(future.exception(), BrokenProcessPool):
            with self.lock:
                if self.executor is executor:  # not a fresh one started since
                    self._discard()

    def _discard(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = None
        self.holds.clear()

    def shutdown(self) -> None:
        with self.lock:
            executor, self.executor = self.executor, None
        if executor is not None:
            executor.shutdown(wait=True)  # clips already handed over are decoded, not dropped


class BeamSearchPool:
    """``submit(adapter_set, log_probs)`` -> Future of the transcript, decoded in another process."""

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError("a beam-search pool needs at least one process")
        # spawn, not fork: the parent holds torch's thread pools and the model worker's locks
        context = multiprocessing.get_context("spawn")
        self._processes = [_Process(context) for _ in range(processes)]
        self._turn = itertools.count()
        for process in self._processes:
            process.start()

    def submit(self, adapter_set: Any, log_probs: np.ndarray) -> Future:
        process = self._processes[next(self._turn) % len(self._processes)]
        return process.submit(decoder_fingerprint(adapter_set), lambda: decoder_spec(adapter_set),
                              np.ascontiguousarray(log_probs, dtype=np.float32))

    def shutdown(self) -> None:
        for process in self._processes:
            process.shutdown()
