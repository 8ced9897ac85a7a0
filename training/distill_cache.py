"""Cache the frozen backbone's layer outputs and the teacher's embedding for every view of every clip.

Distillation trains an L-adapter stack and a pooled head on top of a frozen encoder, so the encoder
pass and the teacher run once per clip view and are kept on disk in shards: features (fp16, real
frames of the chosen layers) under ``--out`` and the teacher's d-vectors under ``--teacher-out``
(``data/teacher/``), both safetensors whose metadata lists the keys (``<clip path>#<view>``). A rerun
skips the clips already in a shard, so an interrupted run resumes where it stopped.

Refuses audio of the held-out suites (``data/human``, ``data/far``): no test or validation speaker,
real or Kokoro, may reach training; ``--eval-only`` caches such clips for scoring trials, in shards
marked so that the trainer refuses them as training data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from elp import AdapterSet, MultiAdapterModel, config_for_method, load_backbone, pad_waveforms
from training.dataset import load_audio
from training.distill_views import make_view
from training.teacher import TeacherFn, resemblyzer_teacher

HELD_OUT = ("data/human", "data/far", "/human/", "/far/")
KEY = "student"


def refuse_held_out(paths: list[str]) -> None:
    """Raise if any clip comes from a held-out suite (real people or the held-out synthesiser)."""
    bad = [p for p in paths if any(marker in p for marker in HELD_OUT)]
    if bad:
        raise SystemExit(f"refusing to train on held-out audio: {bad[:3]} ...")


def clip_seed(path: str, view: int, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{Path(path).name}|{view}".encode()).digest()[:8], "little")


def done_keys(folder: Path) -> set[str]:
    """Keys already cached in ``folder``'s shards."""
    keys: set[str] = set()
    for shard in sorted(folder.glob("shard-*.safetensors")):
        with safe_open(shard, "pt") as handle:
            keys.update(json.loads(handle.metadata()["keys"]))
    return keys


def plain_encoder(backbone_path: str) -> MultiAdapterModel:
    """The frozen backbone with an E/P-free set registered, so ``encode`` is the plain pass."""
    backbone = load_backbone(backbone_path)
    model = MultiAdapterModel(backbone)
    config = config_for_method("l", "verification", backbone.identity.to_dict())
    model.add_adapter_set(KEY, AdapterSet.create(config, backbone))
    return model


@torch.no_grad()
def encode_views(model: MultiAdapterModel, waves: list[np.ndarray], layers: list[int],
                 batch_size: int = 16) -> list[list[torch.Tensor]]:
    """Per wave: fp16 real frames of each chosen layer, batched by length."""
    order = sorted(range(len(waves)), key=lambda i: waves[i].size)
    out: list[list[torch.Tensor]] = [[] for _ in waves]
    for start in range(0, len(order), batch_size):
        picked = order[start : start + batch_size]
        padded, lengths = pad_waveforms([torch.from_numpy(waves[i]) for i in picked])
        encoded = model.encode(padded, lengths, [KEY] * len(picked))
        for row, index in enumerate(picked):
            frames = int(encoded.lengths[row])
            out[index] = [encoded.hidden_states[layer][row, :frames].to(torch.float16).contiguous() for layer in layers]
    return out


def view_numbers(path: str, views: int, seed: int, mix: float) -> list[int]:
    """Which views of a clip to cache: all ``views``, or with ``mix`` one view per clip, a degraded one
    (view 1) with probability ``mix`` (more clips for the same encoder time)."""
    if not mix:
        return list(range(views))
    return [1] if np.random.default_rng(clip_seed(path, -1, seed)).random() < mix else [0]


def cache_shard(model: MultiAdapterModel, teacher: TeacherFn, paths: list[str], views: int, layers: list[int],
                seed: int, max_seconds: float, mix: float = 0.0) -> tuple[dict, dict, list[str], list[str]]:
    """Features and teacher embeddings of every view of ``paths``."""
    keys, student_audio, teacher_vectors, recipes = [], [], [], []
    limit = int(max_seconds * 16000)
    for path in paths:
        audio = load_audio(path)
        for view in view_numbers(path, views, seed, mix):
            made = make_view(audio, view, np.random.default_rng(clip_seed(path, view, seed)))
            keys.append(f"{path}#{view}")
            student_audio.append(made.student[:limit])
            teacher_vectors.append(teacher(made.teacher))
            recipes.append(made.recipe)
    features = encode_views(model, student_audio, layers)
    tensors = {f"{i}.{k}": state for i, states in enumerate(features) for k, state in enumerate(states)}
    teacher_tensors = {"embeddings": torch.from_numpy(np.stack(teacher_vectors))}
    return tensors, teacher_tensors, keys, recipes


def save_shard(folder: Path, number: int, tensors: dict, metadata: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"shard-{number:05d}.safetensors"
    partial = file.with_suffix(".partial")
    save_file(tensors, partial, metadata=metadata)
    partial.replace(file)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("audio", nargs="+", help="audio files, or folders of FLAC/WAV clips")
    p.add_argument("--out", required=True, help="feature shards folder")
    p.add_argument("--teacher-out", required=True, help="teacher shards folder (data/teacher/...)")
    p.add_argument("--backbone", default="models/whisper-base")
    p.add_argument("--views", type=int, default=2, help="view 0 clean, then degraded/new-speaker views")
    p.add_argument("--layers", default="1,2,3,4,5,6")
    p.add_argument("--shard-size", type=int, default=100, help="clips per shard")
    p.add_argument("--max-clips", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=6.0)
    p.add_argument("--mix", type=float, default=0.0,
                   help="one view per clip instead: a degraded one with this probability, else the clean one")
    p.add_argument("--eval-only", action="store_true",
                   help="features of held-out clips for scoring trials: allowed for data/human and data/far, "
                        "marked so that training.distill refuses to train on them")
    p.add_argument("--part", default="0/1", help="K/N: every N-th clip from the K-th, for N processes "
                                                 "writing N folders")
    p.add_argument("--threads", type=int, default=1, help="torch threads (run several processes instead)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    # one thread: on a shared CPU the teacher's small LSTM steps spend most of a multi-threaded pool's
    # time spinning (16 clips: 15.8 s of CPU with the default pool, a tenth of that alone)
    torch.set_num_threads(args.threads)
    paths = []
    for item in args.audio:
        found = sorted(str(f) for f in Path(item).glob("*") if f.suffix in (".flac", ".wav")) \
            if Path(item).is_dir() else [item]
        paths += found
    if not args.eval_only:
        refuse_held_out(paths)
    # a fixed pseudo-random order, so a --max-clips subset spreads over every speaker and task
    paths.sort(key=lambda x: hashlib.sha256(Path(x).name.encode()).hexdigest())
    if args.max_clips:
        paths = paths[: args.max_clips]
    part, parts = (int(x) for x in args.part.split("/"))
    paths = paths[part::parts]
    out, teacher_out = Path(args.out), Path(args.teacher_out)
    done = {key.split("#")[0] for key in done_keys(out)}
    todo = [x for x in paths if x not in done]
    layers = [int(x) for x in args.layers.split(",")]
    model, teacher = plain_encoder(args.backbone), resemblyzer_teacher()
    number = len(list(out.glob("shard-*.safetensors")))
    started = time.perf_counter()
    for start in range(0, len(todo), args.shard_size):
        chunk = todo[start : start + args.shard_size]
        tensors, teacher_tensors, keys, recipes = cache_shard(model, teacher, chunk, args.views, layers, args.seed,
                                                              args.max_seconds, args.mix)
        metadata = {"keys": json.dumps(keys), "layers": json.dumps(layers), "recipes": json.dumps(recipes),
                    "eval_only": json.dumps(args.eval_only)}
        save_shard(out, number, tensors, metadata)
        save_shard(teacher_out, number, teacher_tensors, metadata)
        number += 1
        print(json.dumps({"clips": start + len(chunk), "of": len(todo),
                          "seconds": round(time.perf_counter() - started, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
