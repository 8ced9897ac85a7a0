"""Live audio cut into utterances as it arrives: the voice detector run chunk by chunk, and an endpointer.

A live stream (a microphone, a phone line) has no end to wait for: the server must decide *while the audio
arrives* where each utterance begins and ends, answer each one when it ends, and (for ASR) show the words
of the utterance still being spoken. :class:`StreamingVoiceDetector` gives Silero's speech probability of
every 32 ms chunk as soon as the chunk is complete, carrying the LSTM's state and the 64 samples of context
from one piece to the next, so its probabilities equal :class:`elp.voice_activity.SileroVAD` on the whole
recording. :class:`Endpointer` turns them into :class:`Utterance` events with hysteresis (a voice opens an
utterance at ``start_probability``, only a pause under ``end_probability`` for ``end_pause_s`` closes it, as
Silero's own ``get_speech_timestamps`` does), keeps ``pad_s`` of audio on both sides, cuts an utterance that
reaches ``max_utterance_s`` at its least voiced moment, and offers the open utterance for a partial answer as
it grows. It holds at most one utterance of audio (plus the pre-roll), whatever the stream's length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from elp.voice_activity import CHUNK, CONTEXT, SAMPLE_RATE, LSTMState, SileroVAD, shared_model

#: a partial answer is offered when the open utterance has grown by ``partial_interval_s`` *and* by this
#: factor since the last one: each partial reads the whole utterance so far, so geometric spacing keeps
#: the partials of a 20 s utterance to ~2x its audio instead of ~10x at a fixed one-second cadence
PARTIAL_GROWTH = 1.5
#: where a too-long utterance is cut: the least voiced chunk in this last share of it
FORCED_CUT_SEARCH = 0.25


class StreamResampler:
    """A stream at ``rate`` to 16 kHz piece by piece: ``scipy.signal.resample_poly``'s filter (a Kaiser-windowed
    FIR, 10 zero crossings a side) applied as the audio arrives. Each output sample is released once every
    input it depends on has come, so the result does not depend on how the stream was cut into pieces, and
    with :meth:`flush` it equals ``resample_poly`` on the whole stream."""

    def __init__(self, rate: int, target: int = SAMPLE_RATE) -> None:
        from scipy.signal import firwin

        divisor = math.gcd(rate, target)
        self.up, self.down = target // divisor, rate // divisor
        widest = max(self.up, self.down)
        self.delay = 10 * widest  # half the filter, at the upsampled rate
        # (the same rate: no filter, samples pass through)
        self.taps = firwin(2 * self.delay + 1, 1.0 / widest, window=("kaiser", 5.0)) * self.up if widest > 1 else None
        # the first input of a block must sit on the output grid: k * up = delay (mod down)
        self._phase = self.delay * pow(self.up, -1, self.down) % self.down if self.down > 1 else 0
        self._input = np.zeros(0, dtype=np.float64)
        self._offset = 0  # stream index of _input[0]
        self._received = 0
        self._released = 0  # output samples given so far

    def push(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self.up == self.down:
            return samples
        self._input = np.concatenate([self._input, samples])
        self._received += len(samples)
        # output j reads inputs up to (j * down + delay) // up: release those whose last input has come
        return self._release(max(0, -(-(self._received * self.up - self.delay) // self.down)))

    def flush(self) -> np.ndarray:
        """The outputs that read past the stream's end (as zeros), up to resample_poly's length."""
        if self.up == self.down:
            return np.zeros(0, dtype=np.float32)
        total = -(-self._received * self.up // self.down)
        self._input = np.concatenate([self._input, np.zeros(len(self.taps) // self.up + 2)])
        return self._release(total)

    def _release(self, end: int) -> np.ndarray:
        from scipy.signal import upfirdn

        first = self._released
        if end <= first:
            return np.zeros(0, dtype=np.float32)
        lowest = -(-(first * self.down + self.delay - (len(self.taps) - 1)) // self.up)
        lowest -= (lowest - self._phase) % self.down
        highest = ((end - 1) * self.down + self.delay) // self.up
        block = np.zeros(highest - lowest + 1)
        start = max(lowest, self._offset)
        block[start - lowest:] = self._input[start - self._offset:highest + 1 - self._offset]
        filtered = upfirdn(self.taps, block, self.up, self.down)
        skip = (first * self.down + self.delay - lowest * self.up) // self.down
        self._released = end
        keep_from = max(self._offset, lowest - self.down)  # the next block starts no earlier
        self._input = self._input[keep_from - self._offset:]
        self._offset = keep_from
        return filtered[skip:skip + end - first].astype(np.float32)


def mulaw_samples(data: bytes) -> np.ndarray:
    """G.711 mu-law bytes (telephone lines: 8-bit, usually 8 kHz) as float32 samples in [-1, 1]."""
    code = ~np.frombuffer(data, dtype=np.uint8)
    exponent = (code >> 4) & 0x07
    magnitude = ((((code & 0x0F).astype(np.int32) << 3) + 0x84) << exponent) - 0x84
    return (np.where(code & 0x80, -magnitude, magnitude) / 32768.0).astype(np.float32)


class StreamingVoiceDetector:
    """Silero's speech probability of each complete 32 ms chunk of a 16 kHz stream, piece by piece."""

    def __init__(self, model: SileroVAD | None = None) -> None:
        self.model = model if model is not None else shared_model()
        self._pending = np.zeros(0, dtype=np.float32)  # samples not yet in a complete chunk
        self._context = np.zeros(CONTEXT, dtype=np.float32)  # the 64 samples before the next chunk
        self._state: LSTMState | None = None
        self.chunks = 0  # complete chunks read so far

    def push(self, samples: np.ndarray) -> np.ndarray:
        """The probabilities of the chunks that ``samples`` complete (none until 512 samples have come)."""
        data = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32).reshape(-1)])
        whole = len(data) // CHUNK * CHUNK
        self._pending = data[whole:]
        if whole == 0:
            return np.zeros(0, dtype=np.float32)
        body = torch.from_numpy(np.concatenate([self._context, data[:whole]]))
        self._context = data[whole - CONTEXT:whole].copy()
        probabilities, self._state = self.model.step(body.unfold(0, CHUNK + CONTEXT, CHUNK), self._state)
        self.chunks += whole // CHUNK
        return probabilities.numpy()

    def flush(self) -> np.ndarray:
        """The probability of the last, incomplete chunk, zero-padded (as the whole-clip model pads it)."""
        if len(self._pending) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.push(np.zeros(CHUNK - len(self._pending), dtype=np.float32))


@dataclass(frozen=True)
class EndpointSettings:
    """How the endpointer hears utterances (seconds; probabilities are Silero's per 32 ms chunk)."""

    start_probability: float = 0.5
    end_probability: float = 0.35
    #: voiced chunks in a row that open an utterance (a click or a cough shorter than this does not)
    min_speech_s: float = 0.25
    #: a pause this long (every chunk under ``end_probability``) ends the utterance (0.3 s: the best of 0.3-1.0 s
    #: on validation recordings for ASR, docs/server.md "Live streams"; commands may want longer)
    end_pause_s: float = 0.3
    #: audio kept before the first and after the last voiced chunk
    pad_s: float = 0.2
    #: an utterance this long is cut (at its least voiced chunk near the end) and the rest goes on
    max_utterance_s: float = 20.0
    #: a partial answer of the open utterance at most this often (0: none)
    partial_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.end_probability <= self.start_probability < 1.0:
            raise ValueError("need 0 < end_probability <= start_probability < 1")
        if self.min_speech_s < 0 or self.end_pause_s <= 0 or self.pad_s < 0 or self.partial_interval_s < 0:
            raise ValueError("durations must be positive (min_speech_s, pad_s, partial_interval_s: or zero)")
        if self.max_utterance_s < 4 * (self.min_speech_s + self.pad_s + CHUNK / SAMPLE_RATE):
            raise ValueError("max_utterance_s is too short for the speech and padding it must hold")


@dataclass(frozen=True)
class Utterance:
    """One utterance of the stream: samples ``start``..``end`` (16 kHz, counted from the stream's start).
    ``final``: it has ended (a pause, the cut of a too-long one: ``forced``, or the stream's end); else a
    partial view of the utterance still being spoken. ``index`` counts final utterances from 0."""

    index: int
    start: int
    end: int
    waveform: np.ndarray
    final: bool
    forced: bool = False

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.end / SAMPLE_RATE


def _chunks(seconds: float, at_least: int = 1) -> int:
    return max(at_least, math.ceil(seconds * SAMPLE_RATE / CHUNK))


class Endpointer:
    """Feeds a 16 kHz stream to the voice detector and returns the utterances it finds, as they end.

    Bounds fall on chunk borders (the padding is rounded up to whole chunks), except an utterance that the
    stream's end closes."""

    def __init__(self, settings: EndpointSettings | None = None, detector: StreamingVoiceDetector | None = None,
                 ) -> None:
        self.settings = settings or EndpointSettings()
        self.detector = detector or StreamingVoiceDetector()
        s = self.settings
        self._pad = _chunks(s.pad_s, at_least=0)
        self._min_speech = _chunks(s.min_speech_s)
        self._end_pause = _chunks(s.end_pause_s)
        self._max_chunks = _chunks(s.max_utterance_s)
        self._partial_chunks = _chunks(s.partial_interval_s)
        # the stream's samples from chunk ``_origin`` on: the first ``_held`` of a buffer grown by doubling, so
        # a 20 ms message costs its own samples, not a copy of the whole utterance so far
        self._buffer = np.zeros(CHUNK * 64, dtype=np.float32)
        self._held = 0
        self._probabilities: list[float] = []  # of the complete chunks from ``_origin`` on
        self._origin = 0
        self._run = 0  # voiced chunks in a row while no utterance is open
        self._start: int | None = None  # the open utterance's first chunk
        self._last_voiced = 0  # the chunk after its last chunk at or over end_probability
        self._next_partial = 0  # length (chunks) at which the next partial is due
        self._closed = 0  # the chunk where the last final utterance ended (the next starts no earlier)
        self.index = 0  # final utterances so far

    @property
    def samples(self) -> int:
        """Samples received so far."""
        return self._origin * CHUNK + self._held

    @property
    def _audio(self) -> np.ndarray:
        return self._buffer[:self._held]

    @property
    def open(self) -> bool:
        return self._start is not None

    def push(self, samples: np.ndarray) -> list[Utterance]:
        """Read more of the stream; returns the utterances that ended in it (and, last, at most one partial
        view of the open one)."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._held + len(samples) > len(self._buffer):
            grown = np.zeros(max(self._held + len(samples), 2 * len(self._buffer)), dtype=np.float32)
            grown[:self._held] = self._audio
            self._buffer = grown
        self._buffer[self._held:self._held + len(samples)] = samples
        self._held += len(samples)
        found = self._read(self.detector.push(samples))
        partial = self._partial()
        if partial is not None:
            found.append(partial)
        self._trim()
        return found

    def finish(self) -> list[Utterance]:
        """The stream has ended: the open utterance (if any) ends with it, ``pad_s`` after its last voice."""
        found = self._read(self.detector.flush())
        if self._start is not None:
            end = min(self.samples, (self._last_voiced + self._pad) * CHUNK)
            found.append(self._close(max(end, self._start * CHUNK + 1)))
        return found

    def _read(self, probabilities: np.ndarray) -> list[Utterance]:
        s = self.settings
        found = []
        for probability in probabilities.tolist():
            chunk = self._origin + len(self._probabilities)
            self._probabilities.append(probability)
            if self._start is None:
                self._run = self._run + 1 if probability >= s.start_probability else 0
                if self._run < self._min_speech:
                    continue
                # its padding may not reach back into the utterance before (a pause just over end_pause_s)
                self._open(max(self._origin, self._closed, chunk + 1 - self._run - self._pad))
            if probability >= s.end_probability:
                self._last_voiced = chunk + 1
            elif chunk + 1 - self._last_voiced >= self._end_pause:
                found.append(self._close((self._last_voiced + self._pad) * CHUNK))
                continue
            if chunk + 1 - self._start >= self._max_chunks:
                found.append(self._forced_cut(chunk + 1))
        return found

    def _open(self, start_chunk: int) -> None:
        self._start = start_chunk
        self._run = 0
        self._next_partial = self._partial_chunks

    def _slice(self, start: int, end: int) -> np.ndarray:
        return self._audio[start - self._origin * CHUNK:end - self._origin * CHUNK].copy()

    def _close(self, end: int, forced: bool = False) -> Utterance:
        """End the open utterance at sample ``end``."""
        assert self._start is not None
        start, end = self._start * CHUNK, min(end, self.samples)
        utterance = Utterance(self.index, start, end, self._slice(start, end), final=True, forced=forced)
        self.index += 1
        self._closed = -(-end // CHUNK)
        self._start = None
        self._run = 0
        return utterance

    def _forced_cut(self, now: int) -> Utterance:
        """Cut the too-long open utterance at its least voiced chunk in the last ``FORCED_CUT_SEARCH`` of it;
        the audio from the cut on opens the next utterance at once (the voice goes on)."""
        assert self._start is not None
        search_from = self._start + int((now - self._start) * (1.0 - FORCED_CUT_SEARCH))
        window = self._probabilities[search_from - self._origin:now - self._origin]
        cut = max(self._start + 1, search_from + int(np.argmin(window)))
        utterance = self._close(cut * CHUNK, forced=True)
        self._open(cut)
        self._last_voiced = now
        return utterance

    def _partial(self) -> Utterance | None:
        if self._start is None or self.settings.partial_interval_s <= 0:
            return None
        length = self._origin + len(self._probabilities) - self._start
        if length < self._next_partial:
            return None
        self._next_partial = max(length + self._partial_chunks, math.ceil(length * PARTIAL_GROWTH))
        start = self._start * CHUNK
        return Utterance(self.index, start, self.samples, self._slice(start, self.samples), final=False)

    def _trim(self) -> None:
        """Keep only what an utterance may still need: the open one, or the pre-roll of the next."""
        complete = self._origin + len(self._probabilities)
        keep_from = self._start if self._start is not None else complete - self._run - self._pad
        keep_from = max(self._origin, min(keep_from, complete))
        if keep_from > self._origin:
            dropped = (keep_from - self._origin) * CHUNK
            self._buffer[:self._held - dropped] = self._buffer[dropped:self._held]
            self._held -= dropped
            self._probabilities = self._probabilities[keep_from - self._origin:]
            self._origin = keep_from
