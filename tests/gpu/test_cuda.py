"""On a CUDA device: the answers of the CPU, mixed batches equal to each set alone under both routings,
and the server answering from the GPU. Skipped without CUDA (CI has none); run on a lent GPU with
``pytest -m gpu``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from elp import MultiAdapterModel, load_backbone
from elp.testing import make_random_adapter_set, outputs_per_row, seeded_waveform

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

# Every adapter kind and prompt position, as in tests/elp/test_adapters.py's mixed batches.
SETS = {"asr": dict(task="asr", method="elp", num_prompt_frames=3, prompt_position="prefix", seed=1),
        "spk": dict(task="verification", method="el", seed=2),
        "emo": dict(task="emotion", method="ep", num_prompt_frames=5,
                    prompt_position="suffix", seed=3),
        "int": dict(task="intent", method="l", seed=4)}
KEYS = ["asr", "emo", "spk", "int", "emo", "asr"]
WAVES = [seeded_waveform(0.6 + 0.15 * i, seed=i) for i in range(len(KEYS))]


@pytest.fixture(scope="module", params=["wavlm", "whisper"])
def backbone_dir(request, tiny_backbone_dir) -> Path:
    return tiny_backbone_dir(request.param)


def _model(backbone_dir: Path, device: str, gathered: bool = False) -> MultiAdapterModel:
    backbone = load_backbone(str(backbone_dir), device=device)
    model = MultiAdapterModel(backbone, gathered_routing=gathered)
    for key, kwargs in SETS.items():
        model.add_adapter_set(key, make_random_adapter_set(backbone, **kwargs))
    return model.eval()


def _rows(model: MultiAdapterModel, waves: list[torch.Tensor], keys: list[str]) -> list[torch.Tensor]:
    return [row.float().cpu() for row in outputs_per_row(model, waves, keys)]


@pytest.mark.parametrize("gathered", [False, True], ids=["per-group", "gathered"])
def test_mixed_batch_on_cuda_equals_each_set_alone(backbone_dir: Path, gathered: bool) -> None:
    model = _model(backbone_dir, "cuda", gathered)
    mixed = _rows(model, WAVES, KEYS)
    for index, key in enumerate(KEYS):
        alone = _rows(model, [WAVES[index]], [key])[0]
        torch.testing.assert_close(mixed[index], alone, atol=1e-4, rtol=1e-4, msg=f"clip {index} ({key})")


def test_cuda_gives_the_cpus_answers(backbone_dir: Path) -> None:
    on_cpu, on_cuda = _rows(_model(backbone_dir, "cpu"), WAVES, KEYS), _rows(_model(backbone_dir, "cuda"), WAVES, KEYS)
    for index, (cpu, cuda) in enumerate(zip(on_cpu, on_cuda, strict=True)):
        torch.testing.assert_close(cuda, cpu, atol=1e-4, rtol=1e-4, msg=f"clip {index} ({KEYS[index]})")


@pytest.mark.anyio
async def test_the_server_answers_from_the_gpu_as_from_the_cpu(tmp_path: Path) -> None:
    from tests.server.helpers import build_store, make_settings, running_app, wav_bytes

    backbone, store = build_store(tmp_path)
    files = {"file": ("clip.wav", wav_bytes(1.0, seed=1), "audio/wav")}
    answers = {}
    for device in ("cpu", "cuda"):
        settings = make_settings(backbone, store, tmp_path / device, device=device)
        async with running_app(settings) as (app, client):
            answers[device] = {route: (await client.post(route, files=files)).json()
                               for route in ("/asr", "/emotion", "/intent")}
            if device == "cuda":
                assert torch.cuda.memory_allocated() > 0
    assert answers["cuda"]["/asr"]["text"] == answers["cpu"]["/asr"]["text"]
    for route in ("/emotion", "/intent"):
        cpu, cuda = answers["cpu"][route], answers["cuda"][route]
        assert cuda["label" if route == "/emotion" else "intent"] == cpu["label" if route == "/emotion" else "intent"]
        for label, score in cpu["scores"].items():
            assert math.isclose(cuda["scores"][label], score, abs_tol=1e-3), (route, label)
