"""``training.suites.language``: a language set's near / far / human figures through the served model, each
from its own folder's manifest, the accuracy computed from the set's own answers."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf
import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.testing import make_random_adapter_set, save_tiny_backbone, seeded_waveform
from training.data.manifest import ManifestRow, write_manifest
from training.suites import language

LABELS = ["de", "en", "fr"]


def clips(folder: Path, count: int, seed: int, split: str = "test") -> list[ManifestRow]:
    rows = []
    for index in range(count):
        rel = f"audio/{folder.name}-{index}.wav"
        (folder / "audio").mkdir(parents=True, exist_ok=True)
        sf.write(folder / rel, seeded_waveform(0.5 + 0.1 * index, seed=seed + index).numpy(), 16000)
        rows.append(ManifestRow(id=f"{folder.name}-{index}", path=rel, duration_s=1.0, split=split,
                                task="language", speaker=f"s{index % 2}", label=LABELS[index % 3]))
    write_manifest(rows, folder / "language.jsonl")
    return rows


def test_near_far_and_human_come_from_their_own_folders(tmp_path: Path) -> None:
    backbone_dir = save_tiny_backbone(tmp_path / "backbone", "whisper")
    make_random_adapter_set(load_backbone(backbone_dir), "language", method="none", labels=LABELS,
                            seed=3).save(tmp_path / "set")
    near = clips(tmp_path / "corpus", 4, seed=10)
    far = clips(tmp_path / "far", 5, seed=20)
    human = clips(tmp_path / "human", 3, seed=30)
    out = language.evaluate(str(tmp_path / "set"), str(backbone_dir), tmp_path / "corpus", tmp_path / "human",
                            suites=("near", "far", "human"), far=tmp_path / "far")
    assert {name: out[name]["n"] for name in out} == {"near": 4, "far": 5, "human": 3}
    model = MultiAdapterModel(load_backbone(backbone_dir))
    model.add_adapter_set("set", AdapterSet.load(tmp_path / "set"))
    for name, rows, folder in (("near", near, "corpus"), ("far", far, "far"), ("human", human, "human")):
        answers = [model.predict([torch.from_numpy(sf.read(tmp_path / folder / r.path, dtype="float32")[0])],
                                 ["set"])[0].label for r in rows]
        right = sum(a == r.label for a, r in zip(answers, rows, strict=True))
        assert abs(out[name]["accuracy"] - right / len(rows)) < 1e-9
    only_far = language.evaluate(str(tmp_path / "set"), str(backbone_dir), tmp_path / "corpus", tmp_path / "human",
                                 suites=("far",), far=tmp_path / "far")
    assert set(only_far) == {"far"}
