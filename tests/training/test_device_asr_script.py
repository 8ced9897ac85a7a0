"""scripts/device_asr.sh end to end on a CPU with a tiny Whisper: a sharded bundle whose first share was
staged by an earlier call, three variants trained, every set back without its LM, logs back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from safetensors.torch import load_file, save_file

from elp import load_backbone
from elp.adapter_set import AdapterSet
from elp.decoding.bigram import WordBigramLM
from elp.testing import make_random_adapter_set, save_tiny_backbone, seeded_waveform
from training.device_bundle import pack_adapter_set, pack_corpus, pack_encoder

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["turn on the lights", "open the door", "turn off the music", "close the door", "lights on", "music off"]


def _bundle(root: Path) -> Path:
    whisper = save_tiny_backbone(root / "whisper-base", family="whisper")
    weights = {k: v.half().float() for k, v in load_file(str(whisper / "model.safetensors")).items()}
    save_file(weights, str(whisper / "model.safetensors"), metadata={"format": "pt"})  # fp16 values, as shipped
    bundle = root / "bundle"
    pack_encoder(whisper, bundle / "whisper-base")
    corpus = root / "corpus"
    rows = []
    for index, text in enumerate(TEXTS + TEXTS[:2]):
        split = "train" if index < len(TEXTS) else "valid"
        path = f"audio/{split}/asr-{index}.flac"
        (corpus / path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(corpus / path, seeded_waveform(0.8, seed=index).numpy(), 16000)
        rows.append({"id": f"asr-{index}", "path": path, "split": split, "task": "asr", "text": text,
                     "speaker": f"spk-{index % 3}", "duration_s": 0.8, "label": None, "meta": {}})
    (corpus / "asr.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    pack_corpus(corpus, bundle / "corpus", workers=1, splits=("train", "valid"), shards=2)
    start = make_random_adapter_set(load_backbone(str(whisper)), "asr", seed=5)
    start.attach_language_model(WordBigramLM.build(TEXTS))
    start.save(root / "asr-default")
    pack_adapter_set(root / "asr-default", bundle / "sets" / "asr-default")
    return bundle


@pytest.mark.slow
def test_device_asr_script_trains_three_variants_from_a_sharded_bundle(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    staged = tmp_path / "elp-stage"  # what the first call left on the machine
    staged.mkdir()
    shutil.move(bundle / "corpus" / "audio-1.tar.gz", staged / "audio-1.tar.gz")
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    env = {**os.environ, "BUNDLE": str(bundle), "OUT": str(out), "STAGED": str(staged), "SKIP_WHEELS": "1",
           "DEVICE": "cpu", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "EXTRA": "--max-train-clips 4 --max-eval-clips 2 --num-workers 0 --eval-every 1"}
    result = subprocess.run(["bash", str(REPO / "scripts" / "device_asr.sh"), "0.05", "asr-default"], cwd=work,
                            env=env, capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert '{"decoded": 8, "undecodable": 0}' in result.stdout  # both shards: the staged one and its own
    names = ("asr-x05", "asr-x1", "asr-x2")
    assert sorted(p.name for p in out.iterdir()) == sorted([*(f"{n}.tgz" for n in names), "logs.tgz"])
    for name in names:
        with tarfile.open(out / f"{name}.tgz") as archive:
            archive.extractall(tmp_path / "back", filter="data")
        returned = AdapterSet.load(tmp_path / "back" / name)
        assert returned.language_model is None and returned.config.language_model is None  # LM stays home
        assert returned.config.training["steps"] >= 1
        assert json.loads((tmp_path / "back" / name / "history.json").read_text())
    with tarfile.open(out / "logs.tgz") as archive:
        results = archive.extractfile("runs/results.jsonl").read().decode().splitlines()
    assert len(results) == 3 and all(np.isfinite(json.loads(line)["valid"]["cer"]) for line in results)
