"""The tools a user would otherwise pick, as plain functions of a 16 kHz mono wave.

* ASR: full Whisper base ``generate`` (encoder + its decoder, English, greedy; the processor pads
  every clip to the 30 s input the decoder was trained on: fed a length-sliced encoder output it
  loops), and pocketsphinx with its bundled en-US models;
* speaker embeddings: resemblyzer's GE2E d-vectors (trained on thousands of real speakers), and CAM++ alone
  (3D-Speaker's published network, trained on real Chinese and English speakers), read from the CAM++ branch
  that the shipped ``verify-default`` carries (``elp.heads.campplus``; its front end and layout are tested
  against the published recipe), so the set can be compared with the network it fuses.

Shared by ``elp-evaluate --baselines`` and ``benchmarks/quality_baselines.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from training.data.manifest import normalize_text

SAMPLE_RATE = 16000
ASR_BASELINES = ("whisper", "pocketsphinx")
SPEAKER_BASELINES = ("resemblyzer", "campplus")
CAMPPLUS_SET = "adapters_store/verify-default"


def whisper_generate(whisper_dir: str, device: str = "cpu") -> Callable[[np.ndarray], str]:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(whisper_dir)
    whisper = WhisperForConditionalGeneration.from_pretrained(whisper_dir).to(device).eval()

    @torch.inference_mode()
    def transcribe(wave: np.ndarray) -> str:
        features = processor(wave, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features  # 30 s padded
        ids = whisper.generate(features.to(device), language="en", task="transcribe")
        return normalize_text(processor.batch_decode(ids, skip_special_tokens=True)[0])

    return transcribe


def pocketsphinx() -> Callable[[np.ndarray], str]:
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=SAMPLE_RATE, logfn="/dev/null")

    def transcribe(wave: np.ndarray) -> str:
        decoder.start_utt()
        decoder.process_raw((np.clip(wave, -1, 1) * 32767).astype(np.int16).tobytes(), full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        return normalize_text(hypothesis.hypstr) if hypothesis is not None else ""

    return transcribe


def resemblyzer(device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder(device if device.startswith("cuda") else "cpu", verbose=False)
    return lambda wave: encoder.embed_utterance(preprocess_wav(wave, source_sr=SAMPLE_RATE))


def campplus_branch_of(adapter_dir: str, device: str = "cpu") -> torch.nn.Module:
    """The CAM++ network a speaker set carries as its first or second voice branch, on ``device``."""
    from elp import AdapterSet
    from elp.heads.campplus import CamppBranch

    head = AdapterSet.load(adapter_dir).head
    branch = next((b for b in (getattr(head, "voice", None), getattr(head, "second_voice", None))
                   if isinstance(b, CamppBranch)), None)
    if branch is None:
        raise SystemExit(f"{adapter_dir} carries no CAM++ branch")
    return branch.to(device).eval()


def campplus(adapter_dir: str = CAMPPLUS_SET, device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    """CAM++ alone: the CAM++ branch of a speaker set (:func:`campplus_branch_of`), unit embeddings."""
    branch = campplus_branch_of(adapter_dir, device)

    @torch.inference_mode()
    def embed(wave: np.ndarray) -> np.ndarray:
        row = torch.from_numpy(np.asarray(wave, dtype=np.float32)).to(device)
        return branch(row.unsqueeze(0), torch.tensor([row.numel()]))[0].cpu().numpy()

    return embed


def asr_baselines(names: list[str], whisper_dir: str, device: str = "cpu") -> dict[str, Callable[[np.ndarray], str]]:
    systems: dict[str, Callable[[np.ndarray], str]] = {}
    if "whisper" in names:
        systems["whisper base generate"] = whisper_generate(whisper_dir, device)
    if "pocketsphinx" in names:
        systems["pocketsphinx (en-US)"] = pocketsphinx()
    return systems


def speaker_baselines(names: list[str], device: str = "cpu") -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    systems: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    if "resemblyzer" in names:
        systems["resemblyzer (GE2E)"] = resemblyzer(device)
    if "campplus" in names:
        systems["CAM++ alone"] = campplus(device=device)
    return systems
