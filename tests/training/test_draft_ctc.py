"""The CTC draft tool end to end on a tiny real Whisper checkpoint: capture the frames the decoder set
reads, label them with the decoder's own answers, train, attach; the drafted set answers as the plain
one. Held-out suite clips are refused as training clips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import WhisperForConditionalGeneration

from elp import MultiAdapterModel, load_backbone
from elp.adapter_set import AdapterSet
from elp.convert.whisper_decoder_set import build_decoder_set
from elp.heads.config import DecoderConfig
from elp.testing import seeded_waveform
from training import draft_ctc
from training.data.manifest import ManifestRow, write_manifest
from training.suites.guard import HeldOutDataError

EOT = 50
TOKENS = [f"t{i}" for i in range(EOT)]


@pytest.fixture(scope="module")
def decoder_set_dir(tiny_backbone_dir, tmp_path_factory) -> tuple[str, Path]:
    folder = tiny_backbone_dir("whisper", False)
    whisper = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    config = DecoderConfig(layers=1, heads=2, ffn_dim=64, vocab_size=64, max_target_positions=32,
                           source_positions=1500, prompt_ids=[1, 60, 61, 62], eot_id=EOT, suppress_ids=[3],
                           begin_suppress_ids=[4, EOT], trailing_silence_s=0.3)
    out = tmp_path_factory.mktemp("sets") / "asr-whisper"
    build_decoder_set(whisper.model.decoder, load_backbone(folder), TOKENS, config).save(out)
    return str(folder), out


def manifest(tmp_path: Path, audio_writer, split: str, synth: str = "espeak") -> Path:
    rows = []
    for index, text in enumerate(["turn on the lights", "go away", "hello there friend"]):
        path = audio_writer(tmp_path / "audio" / f"{split}-{index}.wav", seconds=0.6 + 0.2 * index, seed=index)
        rows.append(ManifestRow(id=f"{split}-{index}", path=str(path), duration_s=0.6, split=split, task="asr",
                                speaker=f"spk-{index}", text=text, meta={"synth": synth}))
    return write_manifest(rows, tmp_path / f"{split}-{synth}.jsonl")


def test_cache_pseudo_train_attach(decoder_set_dir, tmp_path, audio_writer):
    backbone, set_dir = decoder_set_dir
    for split, views in (("train", 2), ("valid", 1)):
        draft_ctc.main(["cache", "--set", str(set_dir), "--backbone", backbone, "--manifest",
                        str(manifest(tmp_path, audio_writer, split)), "--split", split, "--views", str(views),
                        "--out", str(tmp_path / f"cache-{split}")])
    items = draft_ctc.load_cache([str(tmp_path / "cache-train")])
    assert len(items) == 6 and items[0][1] == "turn on the lights" and items[0][0].dtype == torch.float16
    draft_ctc.main(["pseudo", "--set", str(set_dir), "--cache", str(tmp_path / "cache-train"),
                    str(tmp_path / "cache-valid")])
    decoded = draft_ctc.load_cache([str(tmp_path / "cache-train")], "decoder")
    assert [text for _, text in decoded] != [text for _, text in items]  # the decoder's answers, not the transcripts
    draft_ctc.main(["train", "--cache", str(tmp_path / "cache-train"), "--valid", str(tmp_path / "cache-valid"),
                    "--target", "decoder", "--hidden", "8", "--kernel", "3", "--epochs", "2", "--out",
                    str(tmp_path / "draft")])
    spec = json.loads((tmp_path / "draft" / "draft_config.json").read_text())
    assert spec["target"] == "decoder" and spec["epoch"] in (1, 2)
    draft_ctc.main(["attach", str(set_dir), "--draft", str(tmp_path / "draft"), "--max-tokens", "4",
                    "--out", str(tmp_path / "drafted")])
    model = MultiAdapterModel(load_backbone(backbone))
    model.add_adapter_set("plain", AdapterSet.load(set_dir))
    model.add_adapter_set("drafted", AdapterSet.load(tmp_path / "drafted"))
    clip = torch.as_tensor(seeded_waveform(1.2, seed=5))
    assert model.predict([clip], ["drafted"])[0].text == model.predict([clip], ["plain"])[0].text
    assert model.adapter_sets["drafted"].head.last_passes


def test_held_out_suite_clips_are_refused_for_training(decoder_set_dir, tmp_path, audio_writer):
    backbone, set_dir = decoder_set_dir
    with pytest.raises(HeldOutDataError):
        draft_ctc.main(["cache", "--set", str(set_dir), "--backbone", backbone, "--manifest",
                        str(manifest(tmp_path, audio_writer, "train", synth="kokoro")), "--out", str(tmp_path / "c")])
