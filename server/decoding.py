"""Where uploads are decoded: a pool of threads, or of processes.

Threads share the server's interpreter: decoding (libsndfile through Python read/seek callbacks, the
checks, resampling; 0.7-0.9 CPU ms a request here) holds its lock for part of that time, time the model
worker cannot launch kernels in, and on a GPU that one interpreter is what limits requests a second
(benchmarks/README.md). In
processes the decoder holds no lock of the server's, and a decoder that crashes on a crafted file
(libsndfile is C) takes down its process, not the server: the process is replaced, the uploads it
held are tried once more, and a file that stops the decoder twice is refused as undecodable. The cost is
the copies between processes (the upload in, the float32 samples out) and ~120 MB a process
(``import server.audio`` in a fresh interpreter: 1.1-1.7 s, 121-125 MB peak RSS, no torch), ~320 MB with the
voice detector of the default speech gate (torch and Silero's weights: 3.8 s to start; ``ELP_SPEECH_DETECTOR=level``
keeps torch out).

``decode_pool`` setting, threads by default: on 2 CPU cores processes served 0.89x the req/s (the
decoders compete with the model for the cores, and the event loop pays ~0.2 ms a request for the copies);
on a GPU, where spare cores are many and the interpreter is the limit, they are timed by
``scripts/device_bench.sh`` (variant ``elp_dprocs``) when a GPU is next lent.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from elp.speech_activity import SpeechGate
from server.audio import AudioLimits, DecodedAudio, decode_audio
from server.errors import InvalidAudioError
from server.pool_processes import single_worker_process

logger = logging.getLogger("server.decoding")


def _warm_up(voice_detector: bool = False) -> None:
    """Import the decoder now (a spawned process starts bare), not on the first upload; with
    ``voice_detector`` also torch and the voice detector's weights (~2 s and ~200 MB more a process)."""
    if voice_detector:
        from elp.voice_activity import shared_model

        shared_model()


class DecodePool:
    """``await decode(data, field)``: the clip as model input, decoded in a thread or a process.

    Processes are single-worker pools taken in turn (as the post stage's are), so a decoder that dies
    fails only the uploads that its own process held; each is tried once more in its replacement."""

    def __init__(self, kind: str, workers: int, target_rate: int, limits: AudioLimits,
                 decode: Callable[..., DecodedAudio] = decode_audio,
                 on_restart: Callable[[], None] | None = None, voice_detector: bool = False) -> None:
        if kind not in ("threads", "processes"):
            raise ValueError(f"decode pool kind must be threads or processes, not {kind!r}")
        self.kind, self.target_rate, self.limits = kind, target_rate, limits
        self._decode = decode  # module-level, so a spawned process can import it
        self._on_restart = on_restart  # counts replaced processes (elp_decoder_restarts_total)
        self._voice_detector = voice_detector  # a speech gate of the deployment runs Silero: load it up front
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._warming: list[Future] = []
        self._executors: list[Executor] = (
            [ThreadPoolExecutor(workers, thread_name_prefix="elp-decode")] if kind == "threads"
            else [self._new_process() for _ in range(workers)])

    def _new_process(self) -> Executor:
        executor = single_worker_process()
        self._warming.append(executor.submit(_warm_up, self._voice_detector))
        return executor

    @property
    def warming(self) -> bool:
        """True while a decoding process is still starting (importing the decoder takes ~1 s): the
        server is not ready until they are, so no first upload waits for an import."""
        self._warming = [future for future in self._warming if not future.done()]
        return bool(self._warming)

    async def decode(self, data: bytes, field: str = "file", speech_gate: SpeechGate | None = None,
                     limits: AudioLimits | None = None) -> DecodedAudio:
        """``limits``: this upload's, when its task takes other lengths than the pool's (long recordings)."""
        call = functools.partial(self._decode, data, target_rate=self.target_rate, limits=limits or self.limits,
                                 field=field, speech_gate=speech_gate)
        loop = asyncio.get_running_loop()
        slot = next(self._turn) % len(self._executors)
        for _attempt in range(2):  # once more, in the fresh process: the crash may have been another upload's
            executor = self._executors[slot]
            try:
                return await loop.run_in_executor(executor, call)
            except BrokenProcessPool:
                self._replace(slot, executor)
        logger.warning("'%s': a decoding process stopped on this upload twice; refused", field)
        raise InvalidAudioError(f"'{field}' could not be decoded as audio: the decoder stopped on it")

    def _replace(self, slot: int, broken: Executor) -> None:
        """A fresh process in place of ``broken`` (once, whichever upload notices first)."""
        with self._lock:
            if self._executors[slot] is broken:
                logger.warning("a decoding process stopped; starting a new one")
                broken.shutdown(wait=False, cancel_futures=True)
                self._executors[slot] = self._new_process()
                if self._on_restart is not None:
                    self._on_restart()

    def shutdown(self) -> None:
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)
