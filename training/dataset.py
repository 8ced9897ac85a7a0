"""Audio datasets for the recipe: clips from a manifest, decoded once, augmented on the fly.

Augmentation is what makes sets trained on synthetic voices carry over to human speech: speed
(0.9-1.1), gain, additive white/pink noise at random SNR, synthetic room reverberation and, for
ASR, short silenced spans (time masking).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt
from torch.utils.data import Dataset, Sampler

from elp import audio as elp_audio
from elp.model import pad_waveforms
from elp.tasks import get_task
from training.data.manifest import CTC_CHARS, ManifestRow

SAMPLE_RATE = 16000
MU = 255.0  # G.711 mu-law
CTC_VOCAB = ["<blank>", *CTC_CHARS]


@functools.cache
def _cached_int16(path: str) -> np.ndarray:
    return (np.clip(load_audio(path), -1, 1) * 32767).astype(np.int16)


def load_audio(path: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 at ``sample_rate`` from any file libsndfile reads: exactly what the server feeds
    the model for the same file (``elp.audio``, shared with serving and the benchmarks)."""
    return elp_audio.load_audio(path, sample_rate)


@dataclass
class AugmentConfig:
    """Probabilities and ranges of each augmentation (all off when ``enabled`` is False)."""

    enabled: bool = True
    speed_prob: float = 0.5
    speeds: tuple[float, ...] = (0.9, 0.95, 1.05, 1.1)
    gain_db: tuple[float, float] = (-12.0, 6.0)
    noise_prob: float = 0.6
    snr_db: tuple[float, float] = (5.0, 35.0)
    reverb_prob: float = 0.3
    time_mask_prob: float = 0.0
    time_masks: int = 2
    time_mask_seconds: float = 0.06
    telephone_prob: float = 0.0  # share of clips sent through a telephone line (:func:`telephone_band`)


def task_augment(task: str, **overrides: object) -> AugmentConfig:
    """The augmentation a task trains with: the defaults, changed by the task's training recipe
    (:class:`elp.tasks.recipe.TrainingRecipe`: e.g. no speed perturbation where rate and pitch carry
    the answer), then by ``overrides``."""
    return AugmentConfig(**get_task(task).training.augment_overrides() | overrides)


def time_mask(audio: np.ndarray, rng: np.random.Generator, count: int, max_seconds: float) -> np.ndarray:
    """Silence ``count`` random spans of up to ``max_seconds`` each (SpecAugment's time masks)."""
    audio = audio.copy()
    for _ in range(count):
        width = int(rng.uniform(0, max_seconds) * SAMPLE_RATE)
        if 0 < width < audio.size:
            start = int(rng.integers(0, audio.size - width))
            audio[start : start + width] = 0.0
    return audio


def narrowband(audio: np.ndarray) -> np.ndarray:
    """The 300-3400 Hz band of a 16 kHz clip, sampled at 8 kHz (a telephone line's channel)."""
    band = sosfilt(butter(4, [300, 3400], btype="band", fs=SAMPLE_RATE, output="sos"), audio)
    return resample_poly(band, 1, 2).astype(np.float32)


def mu_law(audio: np.ndarray) -> np.ndarray:
    """G.711 mu-law companding to 8 bits and back (the quantisation noise of a telephone line)."""
    clipped = np.clip(audio, -1.0, 1.0)
    encoded = np.sign(clipped) * np.log1p(MU * np.abs(clipped)) / np.log1p(MU)
    quantised = np.round((encoded + 1) * 127.5) / 127.5 - 1
    return (np.sign(quantised) * ((1 + MU) ** np.abs(quantised) - 1) / MU).astype(np.float32)


def telephone_band(audio: np.ndarray) -> np.ndarray:
    """A 16 kHz clip as heard through a G.711 telephone line: narrow band, 8 kHz, mu-law, back to 16 kHz."""
    return resample_poly(mu_law(narrowband(audio)), 2, 1).astype(np.float32)[: audio.size]


def _pink_noise(rng: np.random.Generator, length: int) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(length))
    spectrum /= np.sqrt(np.arange(1, spectrum.size + 1))
    return np.fft.irfft(spectrum, n=length).astype(np.float32)


def augment(audio: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    if not config.enabled:
        return audio
    if rng.random() < config.speed_prob:
        speed = float(rng.choice(config.speeds))
        up, down = 100, int(round(100 * speed))
        audio = resample_poly(audio, up, down).astype(np.float32)
    if rng.random() < config.reverb_prob:
        decay = rng.uniform(0.05, 0.4)  # RT60-like seconds
        length = int(decay * SAMPLE_RATE)
        t = np.arange(length) / SAMPLE_RATE
        rir = rng.standard_normal(length) * np.exp(-6.9 * t / decay)
        rir[0] = 1.0
        wet = fftconvolve(audio, rir / np.linalg.norm(rir))[: audio.size]
        audio = (wet * (np.abs(audio).max() / (np.abs(wet).max() + 1e-8))).astype(np.float32)
    if rng.random() < config.noise_prob:
        noise = _pink_noise(rng, audio.size) if rng.random() < 0.5 else rng.standard_normal(audio.size)
        snr = rng.uniform(*config.snr_db)
        power = float(np.mean(audio**2)) + 1e-10
        noise = noise * np.sqrt(power / (float(np.mean(noise**2)) + 1e-10) / 10 ** (snr / 10))
        audio = audio + noise.astype(np.float32)
    if config.telephone_prob and rng.random() < config.telephone_prob:  # the room's noise goes down the line too
        audio = telephone_band(audio)
    if rng.random() < config.time_mask_prob:
        audio = time_mask(audio, rng, config.time_masks, config.time_mask_seconds)
    audio = audio * 10 ** (rng.uniform(*config.gain_db) / 20)
    peak = np.abs(audio).max()
    return (audio / peak * 0.99 if peak > 0.99 else audio).astype(np.float32)


class ClipDataset(Dataset):
    """Clips of one task with integer targets: CTC label sequences, or indices of ``labels`` (the
    values of the task's target field: classes or training speakers).

    Audio is decoded once into memory (int16) because the corpora here are small and the
    training loop revisits every clip many times."""

    def __init__(
        self,
        rows: Sequence[ManifestRow],
        task: str,
        labels: list[str] | None = None,
        augment_config: AugmentConfig | None = None,
        max_seconds: float = 12.0,
        seed: int = 0,
    ) -> None:
        self.rows = list(rows)
        self.task = task
        self.target_field = get_task(task).target_field
        self.labels = labels or []
        self.label_index = {label: i for i, label in enumerate(self.labels)}
        self.augment_config = augment_config or AugmentConfig(enabled=False)
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        self.seed = seed
        self.epoch = 0
        # Cached per process: the comparison runs many methods over the same clips.
        self.audio = [_cached_int16(row.path)[: self.max_samples] for row in self.rows]
        self.char_index = {c: i for i, c in enumerate(CTC_VOCAB)}

    def __len__(self) -> int:
        return len(self.rows)

    def target(self, index: int) -> torch.Tensor:
        """The row's target field (the task's): a character-id sequence for text, else a class index."""
        value = getattr(self.rows[index], self.target_field)
        if self.target_field == "text":
            ids = [self.char_index[c] for c in (value or "") if c in self.char_index]
            return torch.tensor(ids, dtype=torch.long)
        return torch.tensor(self.label_index[value], dtype=torch.long)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        audio = self.audio[index].astype(np.float32) / 32767
        if self.augment_config.enabled:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            audio = augment(audio, rng, self.augment_config)[: self.max_samples]
        return torch.from_numpy(audio), self.target(index)

    def lengths(self) -> list[int]:
        return [a.size for a in self.audio]


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    waves, targets = zip(*batch, strict=True)
    padded, lengths = pad_waveforms(list(waves))
    out = {"waveforms": padded, "lengths": lengths}
    if targets[0].dim() == 0:
        out["targets"] = torch.stack(targets)
    else:
        out["targets"] = torch.cat(targets)
        out["target_lengths"] = torch.tensor([t.numel() for t in targets])
    return out


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of similar length (less padding), shuffled per epoch; deterministic given the seed."""

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool = True, seed: int = 0) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        chunk = self.batch_size * 50
        batches: list[list[int]] = []
        for start in range(0, len(order), chunk):
            part = sorted(order[start : start + chunk], key=self.lengths.__getitem__)
            batches += [part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size
