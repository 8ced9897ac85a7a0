"""The naive baseline: a plain ``transformers`` encoder called once per request, no batching.

This is what a user writes in an afternoon: a FastAPI app with synchronous handlers (FastAPI runs
them on its thread pool), the feature extractor and model exactly as the model card shows, and a
small random head per task on the mean-pooled (or per-frame, for ASR) last hidden state. For
Whisper, ``WhisperFeatureExtractor`` pads every clip to 30 s and ``WhisperEncoder`` insists on
3000 mel frames, so every request costs 30 s of encoder compute. The answers use the server's JSON
shapes so the same client and load generator drive both.

    python -m benchmarks.baselines.naive_hf_app --backbone models/whisper-base --port 8100
"""

from __future__ import annotations

import argparse
import io
import string
import time
from math import gcd
from typing import Annotated, Any

import numpy as np
import soundfile as sf
import torch
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import JSONResponse
from scipy.signal import resample_poly
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, WhisperFeatureExtractor, WhisperModel

from elp.tasks import TaskSpec, set_tasks

VOCAB = ["<blank>", " ", "'", *string.ascii_lowercase]
SAMPLE_RATE = 16000
EMBEDDING_SIZE = 256


#: the tasks a random head stands in for: those with trained sets of their own (not diarization and identification,
#: which answer with verification's sets, nor translation, whose set is a converted decoder)
NAIVE_TASKS = set_tasks()


def head_size(spec: TaskSpec) -> int:
    """Outputs of a task's random head: per frame over the vocabulary (transcripts), an embedding
    (trials), or one per example class (labels)."""
    if spec.evaluation == "transcripts":
        return len(VOCAB)
    if spec.evaluation == "trials":
        return EMBEDDING_SIZE
    return len(spec.example_fields()["labels"])


class NaiveModel:
    """One HF encoder plus random linear heads; ``run`` handles one clip end to end. Float32 like the
    server's default, whatever dtype the checkpoint was saved in (the GPU bundle's encoder is fp16)."""

    def __init__(self, backbone: str, device: str) -> None:
        config = AutoConfig.from_pretrained(backbone)
        self.is_whisper = config.model_type == "whisper"
        if self.is_whisper:
            self.encoder = WhisperModel.from_pretrained(backbone, dtype=torch.float32).get_encoder()
            self.extractor = WhisperFeatureExtractor.from_pretrained(backbone)
            hidden = config.d_model
        else:
            self.encoder = AutoModel.from_pretrained(backbone, dtype=torch.float32)
            try:
                self.extractor = AutoFeatureExtractor.from_pretrained(backbone)
            except Exception:  # random checkpoints have no preprocessor_config.json
                from transformers import Wav2Vec2FeatureExtractor

                self.extractor = Wav2Vec2FeatureExtractor()
            hidden = config.hidden_size
        self.device = device
        self.encoder.to(device).eval()
        generator = torch.Generator().manual_seed(0)
        self.heads = {spec.name: (torch.randn(hidden, head_size(spec), generator=generator) * 0.05).to(device)
                      for spec in NAIVE_TASKS}

    @torch.inference_mode()
    def hidden_states(self, waveform: np.ndarray) -> torch.Tensor:
        features = self.extractor(waveform, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        if self.is_whisper:
            return self.encoder(features.input_features.to(self.device)).last_hidden_state[0]
        return self.encoder(features.input_values.to(self.device)).last_hidden_state[0]

    def run(self, spec: TaskSpec, waveform: np.ndarray) -> torch.Tensor:
        hidden = self.hidden_states(waveform)
        if spec.evaluation == "transcripts":  # per frame
            return hidden @ self.heads[spec.name]
        return hidden.mean(dim=0) @ self.heads[spec.name]


def decode(data: bytes) -> np.ndarray:
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if rate != SAMPLE_RATE:
        divisor = gcd(rate, SAMPLE_RATE)
        mono = resample_poly(mono, SAMPLE_RATE // divisor, rate // divisor)
    return mono.astype(np.float32)


def greedy_ctc(logits: torch.Tensor) -> str:
    ids = logits.argmax(dim=-1).tolist()
    out, previous = [], None
    for index in ids:
        if index != previous and index != 0:
            out.append(VOCAB[index])
        previous = index
    return "".join(out)


def create_app(backbone: str, device: str = "cpu") -> FastAPI:
    """One route per task with trained sets (``NAIVE_TASKS``), answered the naive way for its kind (transcripts,
    trials or labels) in the server's JSON shapes."""
    model = NaiveModel(backbone, device)
    app = FastAPI(title="naive transformers baseline")

    def answer(spec: TaskSpec, upload: UploadFile, started: float) -> tuple[torch.Tensor, dict[str, Any]]:
        waveform = decode(upload.file.read())
        output = model.run(spec, waveform)
        timings = {"total": (time.perf_counter() - started) * 1000.0}
        return output.float().cpu(), {"adapter": "naive-hf", "duration_s": len(waveform) / SAMPLE_RATE,
                                      "timings_ms": timings}

    for spec in NAIVE_TASKS:
        add_route(app, spec, answer)

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        return JSONResponse({"ready": True})

    return app


def add_route(app: FastAPI, spec: TaskSpec, answer) -> None:
    """``spec.route``: a transcript (greedy CTC), a cosine against the ``reference`` clip, or the best
    of the task's example labels with a probability each."""
    if spec.evaluation == "transcripts":
        def transcribe(file: Annotated[UploadFile, File()], adapter: Annotated[str | None, Form()] = None) -> dict:
            logits, base = answer(spec, file, time.perf_counter())
            return {"text": greedy_ctc(logits), **base}

        app.post(spec.route)(transcribe)
    elif spec.evaluation == "trials":
        def compare(file: Annotated[UploadFile, File()], reference: Annotated[UploadFile, File()],
                    adapter: Annotated[str | None, Form()] = None) -> dict:
            started = time.perf_counter()
            first, base = answer(spec, file, started)
            second, _ = answer(spec, reference, started)
            score = float(torch.nn.functional.cosine_similarity(first, second, dim=0))
            return {"score": score, "same_speaker": score >= 0.5, "threshold": 0.5, **base}

        app.post(spec.route)(compare)
    else:
        labels = list(spec.example_fields()["labels"])
        label_field = getattr(spec, "label_field", "label")

        def classify(file: Annotated[UploadFile, File()], adapter: Annotated[str | None, Form()] = None) -> dict:
            logits, base = answer(spec, file, time.perf_counter())
            probs = torch.softmax(logits, dim=-1).tolist()
            return {label_field: labels[int(np.argmax(probs))], "scores": dict(zip(labels, probs, strict=True)),
                    **base}

        app.post(spec.route)(classify)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    uvicorn.run(create_app(args.backbone, args.device), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
