"""Is it a voice? Silero VAD (the ``silero-vad`` package, MIT), run over a whole clip at once.

The level gate (``elp.speech_activity.SpeechGate``) tells sound from silence, not a voice from a hum:
steady noise, a tone or a ring tone passes it, and ``/asr`` then makes words of them ("i was" from hiss).
Silero's model (an STFT, four convolutions, one LSTM cell; 309k parameters) was trained on real speech and
noise in many languages. The package runs it 32 ms at a time from Python (0.2-0.3 ms a chunk); here the
same weights run as one batched pass: the convolutions see every chunk at once (each chunk carries its own
64 samples of context, so they do not depend on each other) and only the LSTM steps through time, in
``torch.nn.LSTM``'s C++ loop. Same probabilities as the package's own chunk-by-chunk model
(``tests/elp/test_voice_activity.py`` compares them), 4-10x less time.

The weights are read from the installed package's TorchScript file, found without importing the package:
``import silero_vad`` sets torch's thread count to 1 for the whole process, which would slow the backbone.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

#: the model reads 16 kHz audio in chunks of 512 samples (32 ms), each with the 64 samples before it
SAMPLE_RATE = 16000
CHUNK = 512
CONTEXT = 64
CHUNK_S = CHUNK / SAMPLE_RATE
#: the LSTM's (hidden, cell) state between chunks
LSTMState = tuple[torch.Tensor, torch.Tensor]
#: the 16 kHz model's file in silero-vad 6.2.3 (pinned in pyproject.toml): another model would move every
#: gate decision, so a different file is refused rather than served silently
JIT_FILE = "silero_vad.jit"
JIT_SHA256 = "e1122837f4154c511485fe0b9c64455f7b929c96fbb8d79fbdb336383ebd3720"

# the TorchScript module's names -> this module's, in the order of the package's 16 kHz model
_NAMES = {
    "stft.forward_basis_buffer": "stft",
    "encoder.0.reparam_conv.weight": "conv1.weight", "encoder.0.reparam_conv.bias": "conv1.bias",
    "encoder.1.reparam_conv.weight": "conv2.weight", "encoder.1.reparam_conv.bias": "conv2.bias",
    "encoder.2.reparam_conv.weight": "conv3.weight", "encoder.2.reparam_conv.bias": "conv3.bias",
    "encoder.3.reparam_conv.weight": "conv4.weight", "encoder.3.reparam_conv.bias": "conv4.bias",
    "decoder.rnn.weight_ih": "lstm.weight_ih_l0", "decoder.rnn.weight_hh": "lstm.weight_hh_l0",
    "decoder.rnn.bias_ih": "lstm.bias_ih_l0", "decoder.rnn.bias_hh": "lstm.bias_hh_l0",
    "decoder.decoder.2.weight": "out.weight", "decoder.decoder.2.bias": "out.bias",
}


class SileroVAD(torch.nn.Module):
    """Speech probability of every 32 ms chunk of a 16 kHz clip (the package's 16 kHz model, batched)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("stft", torch.zeros(258, 1, 256))  # real and imaginary DFT rows, hop 128
        self.conv1 = torch.nn.Conv1d(129, 128, 3, padding=1)
        self.conv2 = torch.nn.Conv1d(128, 64, 3, stride=2, padding=1)
        self.conv3 = torch.nn.Conv1d(64, 64, 3, stride=2, padding=1)
        self.conv4 = torch.nn.Conv1d(64, 128, 3, padding=1)
        self.lstm = torch.nn.LSTM(128, 128)
        self.out = torch.nn.Conv1d(128, 1, 1)

    @torch.inference_mode()
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``waveform``: 1-D, 16 kHz. Returns one probability per chunk (the last chunk zero-padded)."""
        x = F.pad(waveform.reshape(-1).float(), (CONTEXT, (-waveform.numel()) % CHUNK))
        probabilities, _ = self.step(x.unfold(0, CHUNK + CONTEXT, CHUNK))
        return probabilities

    @torch.inference_mode()
    def step(self, chunks: torch.Tensor, state: LSTMState | None = None) -> tuple[torch.Tensor, LSTMState]:
        """Probabilities of consecutive ``chunks`` (n, 576: each chunk with the 64 samples before it) and the
        LSTM's state after them: passing that state with the next chunks continues the clip, so audio that
        arrives piece by piece gets the probabilities of the whole clip (``elp.streaming``)."""
        spectrum = F.conv1d(F.pad(chunks, (0, 64), mode="reflect").unsqueeze(1), self.stft, stride=128)
        half = spectrum.shape[1] // 2
        h = (spectrum[:, :half] ** 2 + spectrum[:, half:] ** 2).sqrt()
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            h = F.relu(conv(h))
        states, state = self.lstm(h.squeeze(-1).unsqueeze(1), state)  # (chunks, 1, 128): the state runs in time
        return torch.sigmoid(self.out(F.relu(states.squeeze(1)).unsqueeze(-1))).reshape(-1), state


def package_model_path() -> Path:
    """The installed silero-vad's 16 kHz TorchScript file (found without importing the package)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the voice detector needs the silero-vad package: pip install 'silero-vad==6.2.3'")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / JIT_FILE


def load_package_model(path: Path | None = None) -> torch.jit.ScriptModule:
    """The package's own TorchScript model (the file's sha256 checked against the pinned one)."""
    path = path or package_model_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != JIT_SHA256:
        raise RuntimeError(f"{path} is not silero-vad 6.2.3's model (sha256 {digest[:12]}...): "
                           "install silero-vad==6.2.3")
    with warnings.catch_warnings():  # torch 2.13 calls torch.jit.load deprecated; the package ships only this
        warnings.simplefilter("ignore", DeprecationWarning)  # and ONNX files (its safetensors are another model)
        return torch.jit.load(str(path), map_location="cpu")


def package_probabilities(package_model: torch.jit.ScriptModule, waveform: np.ndarray) -> np.ndarray:
    """The package's model fed 512 samples at a time, as its own helpers run it: the reference that
    :class:`SileroVAD` is tested (equal) and timed (faster) against; not served."""
    package_model.reset_states()
    samples = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32).reshape(-1))
    x = F.pad(samples, (0, (-samples.numel()) % CHUNK))
    with torch.inference_mode():
        return torch.stack([package_model(x[i:i + CHUNK], SAMPLE_RATE).reshape(())
                            for i in range(0, x.numel(), CHUNK)]).numpy()


def load_silero(path: Path | None = None) -> SileroVAD:
    """The package's weights in :class:`SileroVAD` (the file's sha256 checked against the pinned one)."""
    source = load_package_model(path)._model.state_dict()
    model = SileroVAD()
    model.load_state_dict({_NAMES[name]: tensor for name, tensor in source.items()})
    return model.eval()


_lock = threading.Lock()


@functools.cache
def _shared() -> SileroVAD:
    return load_silero()


def shared_model() -> SileroVAD:
    """One model per process, loaded on first use (~0.1 s); safe to call from several threads."""
    with _lock:
        return _shared()


def speech_probabilities(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """Silero's speech probability of every 32 ms chunk of a 16 kHz clip."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"the voice detector reads {SAMPLE_RATE} Hz audio, not {sample_rate} Hz")
    samples = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32).reshape(-1))
    if samples.numel() == 0:
        return np.zeros(0, dtype=np.float32)
    return shared_model()(samples).numpy()
