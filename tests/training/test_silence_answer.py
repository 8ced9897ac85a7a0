"""The evaluation answers a clip without sound as the server does: the task's silence answer, no model."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch

from training.data.manifest import ManifestRow
from training.evaluation import predict_rows


def test_silent_rows_get_the_silence_answer_and_never_reach_the_model(tmp_path, tiny_backbone_dir) -> None:
    from elp import MultiAdapterModel, load_backbone
    from elp.testing import make_random_adapter_set

    model = MultiAdapterModel(load_backbone(str(tiny_backbone_dir("wavlm")))).eval()
    model.add_adapter_set("asr", make_random_adapter_set(model.backbone, task="asr", seed=1))
    rng = np.random.default_rng(0)
    clips = {"silent": np.zeros(16000, np.float32), "speech": (0.3 * rng.standard_normal(16000)).astype(np.float32)}
    rows = []
    for name, clip in clips.items():
        sf.write(tmp_path / f"{name}.wav", clip, 16000, subtype="FLOAT")
        rows.append(ManifestRow(id=name, path=str(tmp_path / f"{name}.wav"), duration_s=1.0, split="test", task="asr",
                                speaker="s", text="x"))
    seen: list[int] = []
    real_predict = model.predict
    model.predict = lambda waves, keys: seen.append(len(waves)) or real_predict(waves, keys)
    predictions, _ = predict_rows(model, "asr", rows)
    assert predictions["silent"].text == "" and seen == [1]  # only the clip with sound was read
    assert predictions["speech"].text == real_predict([torch.from_numpy(clips["speech"])], ["asr"])[0].text
