"""The GPU bundle: every packing step is lossless where it claims to be, and an ASR-only bundle
carries only ASR audio."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from elp import load_backbone
from elp.adapter_set import AdapterSet
from elp.testing import make_random_adapter_set, save_tiny_backbone
from training.device_bundle import (
    PACKED_SUFFIX,
    pack_adapter_set,
    pack_corpus,
    pack_encoder,
    pack_halves,
    unpack_adapter_sets,
    unpack_corpus,
    unpack_encoder,
    unpack_halves,
)


@pytest.mark.parametrize("length", [0, 1, 2, 7, 4096])
def test_halves_round_trip_any_length(length: int) -> None:
    data = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8).tobytes()
    assert unpack_halves(pack_halves(data)) == data


def test_halves_beat_plain_xz_on_fp16_weights() -> None:
    import lzma

    weights = (torch.randn(200_000, generator=torch.Generator().manual_seed(0)) * 0.05).half().numpy().tobytes()
    assert len(pack_halves(weights)) < 0.95 * len(lzma.compress(weights, preset=6))


def test_encoder_pack_unpack_is_lossless(tmp_path: Path) -> None:
    source = save_tiny_backbone(tmp_path / "whisper", family="whisper")
    # The real converted checkpoint holds fp16 values; make the tiny one hold them too.
    tensors = {k: v.half().float() for k, v in load_file(str(source / "model.safetensors")).items()}
    from safetensors.torch import save_file

    save_file(tensors, str(source / "model.safetensors"), metadata={"format": "pt"})
    packed = tmp_path / "bundle" / "whisper"
    pack_encoder(source, packed)
    assert not (packed / "model.safetensors").exists()
    assert (packed / f"model.safetensors{PACKED_SUFFIX}").exists()
    unpack_encoder(packed)
    restored = load_file(str(packed / "model.safetensors"))
    encoder = {k: v for k, v in tensors.items() if k.startswith(("model.encoder.", "encoder."))}
    assert encoder and set(restored) == set(encoder)
    for key, value in encoder.items():
        assert torch.equal(restored[key].float(), value)
    assert load_backbone(str(packed)) is not None  # loads as an encoder checkpoint


def test_adapter_set_travels_as_fp16_and_returns_float32(tmp_path: Path) -> None:
    backbone = load_backbone(str(save_tiny_backbone(tmp_path / "wavlm", family="wavlm")))
    original = make_random_adapter_set(backbone, task="emotion", labels=["a", "b"], seed=3)
    original.save(tmp_path / "home" / "emo")
    pack_adapter_set(tmp_path / "home" / "emo", tmp_path / "bundle" / "sets" / "emo")
    travelling = load_file(str(tmp_path / "bundle" / "sets" / "emo" / "adapter_model.safetensors"))
    assert {t.dtype for t in travelling.values() if t.is_floating_point()} == {torch.float16}
    unpack_adapter_sets(tmp_path / "bundle" / "sets")
    restored = AdapterSet.load(tmp_path / "bundle" / "sets" / "emo")
    for (name, before), (_, after) in zip(original.state_dict().items(), restored.state_dict().items(), strict=True):
        assert after.dtype == before.dtype, name
        torch.testing.assert_close(after, before.half().to(before.dtype), rtol=0, atol=0)


def test_task_filter_packs_only_that_tasks_audio(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    rng = np.random.default_rng(0)
    for task, split in (("asr", "train"), ("asr", "valid"), ("emotion", "train"), ("asr", "test")):
        path = f"audio/{split}/{task}-{split}-0.flac"
        (corpus / path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(corpus / path, (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
        with (corpus / f"{task}.jsonl").open("a") as manifest:
            manifest.write(json.dumps({"id": f"{task}-{split}", "path": path, "split": split}) + "\n")
    out = tmp_path / "bundle" / "corpus"
    pack_corpus(corpus, out, workers=1, splits=("train", "valid"), tasks=("asr",))
    with tarfile.open(out / "audio.tar.gz") as archive:
        names = sorted(n for n in archive.getnames() if n.endswith(".ogg"))
    assert names == ["audio/train/asr-train-0.ogg", "audio/valid/asr-valid-0.ogg"]
    unpack_corpus(out, workers=1)
    assert (out / "emotion.jsonl").read_text() == (corpus / "emotion.jsonl").read_text()
    audio, rate = sf.read(out / "audio/train/asr-train-0.flac")
    assert rate == 16000 and abs(len(audio) - 8000) < 400


def _write_corpus(corpus: Path, clips: int) -> None:
    rng = np.random.default_rng(1)
    for index in range(clips):
        split = "valid" if index == 0 else "train"
        path = f"audio/{split}/asr-{index}.flac"
        (corpus / path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(corpus / path, (0.1 * rng.standard_normal(4000)).astype(np.float32), 16000)
        with (corpus / "asr.jsonl").open("a") as manifest:
            manifest.write(json.dumps({"id": f"asr-{index}", "path": path, "split": split}) + "\n")
    with (corpus / "asr.jsonl").open("a") as manifest:  # test audio stays home
        manifest.write(json.dumps({"id": "asr-test", "path": "audio/test/asr-test.flac", "split": "test"}) + "\n")


def test_shards_deal_every_clip_once_and_unpack_together(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    _write_corpus(corpus, clips=7)
    out = tmp_path / "bundle" / "corpus"
    pack_corpus(corpus, out, workers=1, splits=("train", "valid"), shards=2)
    assert not (out / "audio.tar.gz").exists()
    shard_names = []
    for shard in ("audio-0.tar.gz", "audio-1.tar.gz"):
        with tarfile.open(out / shard) as archive:
            shard_names.append({n for n in archive.getnames() if n.endswith(".ogg")})
    assert len(shard_names[0]) == 4 and len(shard_names[1]) == 3
    assert not shard_names[0] & shard_names[1]
    unpack_corpus(out, workers=1)
    flacs = sorted(p.relative_to(out).as_posix() for p in out.glob("audio/**/*.flac"))
    assert flacs == sorted(n.replace(".ogg", ".flac") for n in shard_names[0] | shard_names[1])
    assert not list(out.glob("audio/**/*.ogg"))
    assert (out / "asr.jsonl").read_text() == (corpus / "asr.jsonl").read_text()  # nothing missing


def test_a_lost_shard_leaves_a_manifest_of_the_clips_that_arrived(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    _write_corpus(corpus, clips=7)
    out = tmp_path / "bundle" / "corpus"
    pack_corpus(corpus, out, workers=1, splits=("train", "valid"), shards=2)
    (out / "audio-1.tar.gz").unlink()  # the machine was given back between the two calls
    unpack_corpus(out, workers=1)
    rows = [json.loads(line) for line in (out / "asr.jsonl").read_text().splitlines()]
    assert all((out / row["path"]).exists() for row in rows if row["split"] != "test")
    assert len([row for row in rows if row["split"] in ("train", "valid")]) == 4
    assert [row["id"] for row in rows if row["split"] == "test"] == ["asr-test"]  # scored at home


def test_a_word_lm_travels_in_float32(tmp_path: Path) -> None:
    from elp.decoding.bigram import WordBigramLM

    backbone = load_backbone(str(save_tiny_backbone(tmp_path / "wavlm", family="wavlm")))
    original = make_random_adapter_set(backbone, task="asr", seed=4)
    original.attach_language_model(WordBigramLM.build(["turn the lights on", "turn the music off"]))
    original.save(tmp_path / "home" / "asr")
    pack_adapter_set(tmp_path / "home" / "asr", tmp_path / "bundle" / "sets" / "asr")
    travelling = load_file(str(tmp_path / "bundle" / "sets" / "asr" / "adapter_model.safetensors"))
    lm = {k: v for k, v in travelling.items() if k.startswith("language_model.")}
    assert lm and all(v.dtype != torch.float16 for v in lm.values())
    assert {v.dtype for k, v in travelling.items() if k.startswith("head.")} == {torch.float16}
    unpack_adapter_sets(tmp_path / "bundle" / "sets")
    restored = load_file(str(tmp_path / "bundle" / "sets" / "asr" / "adapter_model.safetensors"))
    home = load_file(str(tmp_path / "home" / "asr" / "adapter_model.safetensors"))
    for key in lm:
        assert torch.equal(restored[key], home[key]), key


def test_an_undecodable_clip_is_left_out_not_the_run(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    _write_corpus(corpus, clips=4)
    out = tmp_path / "bundle" / "corpus"
    pack_corpus(corpus, out, workers=1, splits=("train", "valid"))
    unpacked = tmp_path / "unpacked"
    with tarfile.open(out / "audio.tar.gz") as archive:
        archive.extractall(unpacked, filter="data")
    broken = sorted(unpacked.glob("audio/train/*.ogg"))[0]
    broken.write_bytes(broken.read_bytes()[:40])  # cut off mid-page, as by a killed encoder
    with tarfile.open(out / "audio.tar.gz", "w:gz") as archive:
        archive.add(unpacked / "audio", arcname="audio")
    unpack_corpus(out, workers=1)
    ids = [json.loads(line)["id"] for line in (out / "asr.jsonl").read_text().splitlines()]
    assert broken.stem not in ids and len(ids) == 4  # 3 of 4 clips + the test row
