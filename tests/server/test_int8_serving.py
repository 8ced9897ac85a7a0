"""ELP_DTYPE=int8: the server loads the float-trained store on int8 encoder layers and answers
every task near its float32 answers."""

from __future__ import annotations

import pytest

from elp.backbones.quantize import quantized_linear_count
from tests.server.helpers import make_settings, running_app, wav_bytes

pytestmark = pytest.mark.anyio

CLIP = wav_bytes(1.2, seed=4)
OTHER = wav_bytes(1.0, seed=5)


async def _answers(settings) -> tuple[dict[str, dict], int]:
    files = {"file": ("clip.wav", CLIP, "audio/wav")}
    async with running_app(settings) as (app, client):
        answers = {path: (await client.post(path, files=files)).json() for path in ("/asr", "/emotion", "/intent")}
        pair = dict(files, reference=("other.wav", OTHER, "audio/wav"))
        answers["/verify"] = (await client.post("/verify", files=pair)).json()
        precision = "int8" if settings.dtype == "int8" else "float32"  # auto: no calibration for the tiny backbone
        assert (await client.get("/readyz")).json()["encoder"] == {"encoder_device": "cpu",
                                                                   "encoder_precision": precision}
        return answers, quantized_linear_count(app.state.service.backbone)


async def test_int8_backbone_serves_every_task_near_float32(tiny_store, tmp_path) -> None:
    backbone, store = tiny_store
    full, full_count = await _answers(make_settings(backbone, store, tmp_path / "f32"))
    reduced, int8_count = await _answers(make_settings(backbone, store, tmp_path / "int8", dtype="int8"))
    assert full_count == 0 and int8_count > 0
    for path in ("/emotion", "/intent"):
        assert set(reduced[path]["scores"]) == set(full[path]["scores"])
        for label, score in full[path]["scores"].items():
            assert reduced[path]["scores"][label] == pytest.approx(score, abs=0.05), (path, label)
    assert reduced["/verify"]["score"] == pytest.approx(full["/verify"]["score"], abs=0.05)
    assert isinstance(reduced["/asr"]["text"], str)


async def test_auto_dtype_serves_float32_for_a_backbone_without_int8_calibration(tiny_store, tmp_path) -> None:
    """ELP_DTYPE=auto on a backbone no calibration was made for: float32, the same answers."""
    backbone, store = tiny_store
    full, _ = await _answers(make_settings(backbone, store, tmp_path / "f32"))
    auto, auto_count = await _answers(make_settings(backbone, store, tmp_path / "auto", dtype="auto"))
    assert auto_count == 0
    assert auto["/emotion"]["scores"] == pytest.approx(full["/emotion"]["scores"], abs=1e-5)
    assert auto["/verify"]["score"] == pytest.approx(full["/verify"]["score"], abs=1e-5)
