"""Pack what a GPU training run needs into a small folder (the device tool carries at most 64 MiB).

The encoder weights go as fp16 (lossless: the converted Whisper weights are fp16 values) without
the decoder, their bytes split into low and high halves and xz-compressed (41 -> 34 MB: the high
bytes hold the exponents, which repeat); the corpus audio goes as Ogg/Opus at ~14 kbit/s with the
manifests unchanged, and ``unpack`` on the GPU machine decodes it back to FLAC at the manifest
paths, in parallel. Adapter sets to start from travel as fp16 and come back as float32.
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
import shutil
import subprocess
import sys
import tarfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors

from elp.adapter_set import AdapterSet

PACKED_SUFFIX = ".halves.xz"


def pack_halves(data: bytes) -> bytes:
    """Lossless: 16-bit words stored as all low bytes then all high bytes, xz-compressed."""
    padded = data + b"\0" * (len(data) % 2)
    words = np.frombuffer(padded, dtype=np.uint8).reshape(-1, 2)
    header = len(data).to_bytes(8, "little")
    return header + lzma.compress(np.ascontiguousarray(words.T).tobytes(), preset=6)


def unpack_halves(packed: bytes) -> bytes:
    length = int.from_bytes(packed[:8], "little")
    halves = np.frombuffer(lzma.decompress(packed[8:]), dtype=np.uint8).reshape(2, -1)
    return np.ascontiguousarray(halves.T).tobytes()[:length]


def pack_encoder(source: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "preprocessor_config.json"):
        if (source / name).exists():
            shutil.copy(source / name, out / name)
    tensors = load_file(str(source / "model.safetensors"))
    prefixes = ("model.encoder.", "encoder.")
    encoder = {k: v.to(torch.float16).contiguous() for k, v in tensors.items() if k.startswith(prefixes)}
    for key, value in encoder.items():
        if not torch.equal(value.float(), tensors[key].float()):
            raise SystemExit(f"{key} is not exactly representable in fp16; ship float32 instead")
    packed = pack_halves(save_safetensors(encoder, metadata={"format": "pt"}))
    (out / f"model.safetensors{PACKED_SUFFIX}").write_bytes(packed)


def unpack_encoder(folder: Path) -> None:
    for packed in folder.glob(f"*{PACKED_SUFFIX}"):
        packed.with_name(packed.name.removesuffix(PACKED_SUFFIX)).write_bytes(unpack_halves(packed.read_bytes()))
        packed.unlink()


def pack_adapter_set(source: Path, out: Path) -> None:
    """fp16 for the journey (half the bytes); a start point loses nothing that training cannot redo.
    A word LM stays float32: training does not redo it, and its log-probabilities decide the search."""
    adapter_set = AdapterSet.load(source)
    language_model = adapter_set.language_model
    adapter_set.language_model = None  # out of half()'s reach, then back
    adapter_set.half().language_model = language_model
    adapter_set.save(out)


def unpack_adapter_sets(folder: Path) -> None:
    for config in sorted(folder.glob("*/adapter_config.json")):
        AdapterSet.load(config.parent).float().save(config.parent)


def _encode(job: tuple[str, str]) -> None:
    src, dst = job
    if Path(dst).exists() and Path(dst).stat().st_mtime >= Path(src).stat().st_mtime:
        return  # an interrupted pack resumes where it stopped
    audio, rate = sf.read(src, dtype="float32")
    sf.write(dst, audio, rate, format="OGG", subtype="OPUS", compression_level=0.98)


def _decode(job: tuple[str, str]) -> bool:
    """False for a clip that does not decode: it is left out (``trim_manifests``), not the whole run."""
    src, dst = job
    try:
        audio, rate = sf.read(src, dtype="float32")
    except (sf.LibsndfileError, RuntimeError) as exc:
        print(f"skipping {src}: {exc}", file=sys.stderr)
        return False
    sf.write(dst, audio, rate, format="FLAC")
    return True


def pack_corpus(source: Path, out: Path, workers: int, splits: tuple[str, ...] = ("train", "valid", "test"),
                tasks: tuple[str, ...] = (), shards: int = 1) -> None:
    """Manifests whole, audio of ``splits`` only (held-out test audio can stay home: it is scored there)
    and, when ``tasks`` names some, only of those tasks' clips (an ASR run needs no emotion audio).

    ``shards`` > 1 deals the clips round-robin into ``audio-<i>.tar.gz`` archives, so a corpus larger
    than one call's 64 MiB can travel over several calls to the same warm machine; each shard alone is
    a spread sample of the corpus (every speaker, every synthesiser), so training on whichever shards
    arrived still makes sense (see ``trim_manifests``)."""
    out.mkdir(parents=True, exist_ok=True)
    wanted = None
    if tasks:
        wanted = {
            json.loads(line)["path"]
            for task in tasks
            for line in (source / f"{task}.jsonl").read_text().splitlines()
            if line.strip()
        }
    for item in source.iterdir():
        if item.is_file():  # manifests and trial lists: text, gzipped (5 MB -> 0.5 MB)
            (out / f"{item.name}.gz").write_bytes(gzip.compress(item.read_bytes(), mtime=0))
    jobs = []
    for flac in sorted(source.glob("audio/**/*.flac")):
        if flac.relative_to(source / "audio").parts[0] not in splits:
            continue
        if wanted is not None and flac.relative_to(source).as_posix() not in wanted:
            continue
        target = out / flac.relative_to(source).with_suffix(".ogg")
        target.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((str(flac), str(target)))
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_encode, jobs, chunksize=32))
    # One archive instead of thousands of 4 KiB-block files: the size limit counts disk blocks.
    targets = [Path(target) for _, target in jobs]
    for shard in range(shards):
        name = "audio.tar.gz" if shards == 1 else f"audio-{shard}.tar.gz"
        with tarfile.open(out / name, "w:gz") as archive:
            for target in targets[shard::shards]:
                archive.add(target, arcname=target.relative_to(out).as_posix())
    shutil.rmtree(out / "audio", ignore_errors=True)


def unpack_corpus(folder: Path, workers: int) -> None:
    for shard in sorted(folder.glob("audio*.tar.gz")):
        with tarfile.open(shard) as archive:
            archive.extractall(folder, filter="data")
    for packed in folder.glob("*.gz"):
        if not packed.name.endswith(".tar.gz"):
            packed.with_suffix("").write_bytes(gzip.decompress(packed.read_bytes()))
    jobs = [(str(ogg), str(ogg.with_suffix(".flac"))) for ogg in sorted(folder.glob("audio/**/*.ogg"))]
    with ProcessPoolExecutor(workers) as pool:
        decoded = sum(pool.map(_decode, jobs, chunksize=32))
    for ogg, _ in jobs:
        Path(ogg).unlink()
    print(json.dumps({"decoded": decoded, "undecodable": len(jobs) - decoded}))
    trim_manifests(folder)


def trim_manifests(folder: Path) -> dict[str, int]:
    """Drop manifest rows whose audio did not travel (a shard lost with a machine given back between
    calls, or audio left home on purpose) so training reads only clips that are there; rows of splits
    whose audio never travelled at all (test, scored at home) are kept: nothing reads them there."""
    dropped = {}
    for manifest in sorted(folder.glob("*.jsonl")):
        rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        present_splits = {row["split"] for row in rows if (folder / row["path"]).exists()}
        kept = [row for row in rows if row["split"] not in present_splits or (folder / row["path"]).exists()]
        dropped[manifest.stem] = len(rows) - len(kept)
        if dropped[manifest.stem]:
            manifest.write_text("".join(json.dumps(row) + "\n" for row in kept))
    print(json.dumps({"dropped_rows": dropped}))
    return dropped


# What the GPU image lacks (its Python is 3.12): soundfile for the audio, jiwer for WER/CER.
DEVICE_WHEELS = ("soundfile", "cffi", "pycparser", "jiwer", "rapidfuzz")
# And what the server needs for the benchmarks there, at the versions installed here (they must agree).
SERVER_WHEELS = ("fastapi", "starlette", "pydantic", "pydantic-core", "pydantic-settings", "python-dotenv",
                 "uvicorn", "python-multipart", "annotated-types", "typing-inspection", "opentelemetry-api")


def _pinned(names: tuple[str, ...]) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def download_wheels(out: Path, python_version: str, serve: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    names = DEVICE_WHEELS + (SERVER_WHEELS if serve else ())
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "--python-version", python_version, "--platform", "manylinux_2_28_x86_64",
         "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64", "-d", str(out),
         *_pinned(names)],
        check=True,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pack = sub.add_parser("pack")
    pack.add_argument("--backbone", default="models/whisper-base")
    pack.add_argument("--corpus", default="data/corpus")
    pack.add_argument("--out", default=".device")
    pack.add_argument("--workers", type=int, default=2)
    pack.add_argument("--device-python", default="3.12", help="Python version of the GPU image's wheels")
    pack.add_argument("--splits", default="train,valid,test", help="corpus splits whose audio travels")
    pack.add_argument("--tasks", default="", help="comma list: only these tasks' audio travels (default all)")
    pack.add_argument("--shards", type=int, default=1, help="split the audio into this many archives")
    pack.add_argument("--adapter-sets", nargs="*", default=[], help="sets to start from (travel as fp16)")
    pack.add_argument("--serve", action="store_true", help="also the server's wheels (benchmarks on the GPU)")
    unpack = sub.add_parser("unpack")
    unpack.add_argument("--corpus", default=".device/corpus")
    unpack.add_argument("--backbone", default=".device/whisper-base")
    unpack.add_argument("--adapter-sets", default=".device/sets")
    unpack.add_argument("--workers", type=int, default=16)
    args = p.parse_args(argv)
    if args.command == "pack":
        pack_encoder(Path(args.backbone), Path(args.out) / Path(args.backbone).name)
        tasks = tuple(t for t in args.tasks.split(",") if t)
        pack_corpus(Path(args.corpus), Path(args.out) / "corpus", args.workers, tuple(args.splits.split(",")), tasks,
                    args.shards)
        for source in map(Path, args.adapter_sets):
            pack_adapter_set(source, Path(args.out) / "sets" / source.name)
        download_wheels(Path(args.out) / "wheels", args.device_python, args.serve)
    else:
        unpack_encoder(Path(args.backbone))
        unpack_adapter_sets(Path(args.adapter_sets))
        unpack_corpus(Path(args.corpus), args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
