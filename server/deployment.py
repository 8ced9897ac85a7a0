"""How one deployment's settings shape what the service runs: torch's threads, the encoder's dtype, the tasks'
speech gates and long-form splitters with the deployment's overrides. Pure functions of ``Settings``, kept apart
from the service's wiring (``server.service``).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from elp.long_form import LongFormSplitter
from elp.speech_activity import SpeechGate, with_detector
from server.settings import Settings

logger = logging.getLogger("server.service")

#: torch's own choice (the cores this process may use), before any app in this process changed it
DEFAULT_TORCH_THREADS = torch.get_num_threads()
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int8": torch.float32,
          "auto": torch.float32}
#: settings dtypes that quantise a float32 backbone (auto: int8 where measured to hold, elp.backbones)
QUANTIZED = {"int8": "int8", "auto": "auto"}


def set_torch_threads(torch_threads: int, model_workers: int) -> int:
    """Intra-op threads: as configured, or torch's default (the cores this process may use). The model
    workers share them (``BatchWorker.thread_share``): a batch running alone uses all of them, N
    batches at once 1/N each, so N workers use the cores side by side instead of N x cores threads
    fighting over them."""
    threads = torch_threads or DEFAULT_TORCH_THREADS
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    logger.info("torch intra-op threads: %d, shared by %d model worker(s)", threads, model_workers)
    return threads


def deployed_gate(gate: SpeechGate | None, settings: Settings) -> SpeechGate | None:
    """A task's speech gate with the deployment's overrides (``ELP_SPEECH_DETECTOR``, ``ELP_MIN_SPEECH_S``,
    ``ELP_SPEECH_FLOOR_DBFS``); None when the task has none or the minimum is 0."""
    if gate is None:
        return None
    gate = with_detector(gate, settings.speech_detector)
    overrides = {"min_active_s": settings.min_speech_s, "floor_dbfs": settings.speech_floor_dbfs}
    gate = replace(gate, **{name: value for name, value in overrides.items() if value is not None})
    return gate if gate.min_active_s > 0 else None


def deployed_splitter(splitter: LongFormSplitter, settings: Settings) -> LongFormSplitter:
    """A task's long-form splitter with the deployment's speech detector (its pauses and its gate) and gate
    overrides."""
    splitter = splitter.for_detector(settings.speech_detector)
    return replace(splitter, speech_gate=deployed_gate(splitter.speech_gate, settings))


