"""Train a voice branch (``elp.heads.voice``) to reproduce a real-speaker teacher's embeddings.

Two steps, each resumable:

    # 1. views of the training audio: the student's log-mel (degraded view) and the teacher's
    #    embedding of the same voice (training.distill_views), in safetensors shards
    python -m training.distill_voice cache data/realvox/segments ... --views 4 --out data/voice-cache/realvox
    # 2. train on random crops; every epoch scored on validation trial lists, the best one saved
    python -m training.distill_voice train --cache data/voice-cache/* --eval human=TRIALS realvox=TRIALS \
        --out data/candidates/voice-branch

Held-out suites are refused as training audio (``training.distill_cache.refuse_held_out``); the
evaluation clips are read from their trial lists and never cached as training data. The teacher's
vectors are centred on the training views' mean before they become targets (``training.distill.center``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from elp.heads.voice import LogMel, VoiceBranch, VoiceBranchConfig
from training.dataset import load_audio
from training.distill import center, distill_loss
from training.distill_cache import clip_seed, refuse_held_out, save_shard
from training.distill_views import make_view
from training.metrics import compute_eer
from training.teacher import TeacherFn

AUDIO_SUFFIXES = (".flac", ".wav")


def audio_paths(sources: list[str], max_clips: int) -> list[str]:
    """Clips of folders (recursively) and single files, sorted; at most ``max_clips`` (evenly spread)."""
    paths: list[str] = []
    for source in sources:
        folder = Path(source)
        if folder.is_dir():
            paths += sorted(str(p) for p in folder.rglob("*") if p.suffix in AUDIO_SUFFIXES)
        else:
            paths.append(str(folder))
    if max_clips and len(paths) > max_clips:
        paths = [paths[int(i * len(paths) / max_clips)] for i in range(max_clips)]
    return paths


def cache_views(paths: list[str], teacher: TeacherFn, out: Path, views: int, seed: int = 0,
                max_seconds: float = 8.0, shard_size: int = 100, part: tuple[int, int] = (0, 1),
                first_view: int = 0, telephone_share: float = 0.45) -> int:
    """Shards of ``part`` K/N of ``paths`` (every N-th from the K-th); existing shards are kept (resume).
    Views ``first_view`` .. ``first_view + views - 1`` of each clip (another cache of the same clips
    starts where the last one stopped). Returns the number of views written."""
    refuse_held_out(paths)
    k, n = part
    paths = paths[k::n]
    log_mel, limit, written = LogMel(), int(max_seconds * 16000), 0
    for number in range(0, len(paths), shard_size):
        shard = k + n * (number // shard_size)
        if (out / f"shard-{shard:05d}.safetensors").exists():
            continue
        tensors, keys = {}, []
        for path in paths[number: number + shard_size]:
            audio = load_audio(path)
            for view in range(first_view, first_view + views):
                made = make_view(audio, view, np.random.default_rng(clip_seed(path, view, seed)), telephone_share)
                with torch.no_grad():
                    tensors[f"mel.{len(keys)}"] = log_mel(torch.from_numpy(made.student[:limit])).half()
                tensors[f"teacher.{len(keys)}"] = torch.from_numpy(teacher(made.teacher))
                keys.append(f"{path}#{view}")
        save_shard(out, shard, tensors, {"keys": json.dumps(keys)})
        written += len(keys)
        print(f"shard {shard}: {len(keys)} views", flush=True)
    return written


def cache(args: argparse.Namespace) -> None:
    from training.teacher import resemblyzer_teacher

    torch.set_num_threads(1)  # resemblyzer's small LSTM: run processes (--part), not threads
    part = tuple(int(x) for x in args.part.split("/"))
    cache_views(audio_paths(args.audio, args.max_clips), resemblyzer_teacher(), Path(args.out), args.views,
                args.seed, args.max_seconds, args.shard_size, part, args.first_view, args.telephone_share)


def load_cache(folders: list[str]) -> tuple[list[torch.Tensor], torch.Tensor, list[str]]:
    """Every cached view: log-mel (fp16), teacher vector, key."""
    mels, teachers, keys = [], [], []
    for folder in folders:
        for shard in sorted(Path(folder).glob("shard-*.safetensors")):
            with safe_open(shard, "pt") as handle:
                shard_keys = json.loads(handle.metadata()["keys"])
            tensors = load_file(shard)
            for i, key in enumerate(shard_keys):
                mels.append(tensors[f"mel.{i}"])
                teachers.append(tensors[f"teacher.{i}"].float())
                keys.append(key)
    return mels, torch.stack(teachers), keys


def crop_batch(mels: list[torch.Tensor], rows: list[int], frames: int, rng: np.random.Generator,
               mask_bands: int = 0, mask_frames: int = 0) -> torch.Tensor:
    """Random ``frames``-long windows of the chosen views (a shorter view is tiled to length); with
    masks, one run of up to ``mask_bands`` bands and one of up to ``mask_frames`` frames per row is set
    to the clip mean, 0 (SpecAugment: no single band or moment may carry the voice)."""
    out = []
    for row in rows:
        mel = mels[row].float()
        if mel.shape[1] < frames:
            mel = mel.repeat(1, math.ceil(frames / mel.shape[1]))
        start = int(rng.integers(0, mel.shape[1] - frames + 1))
        mel = mel[:, start: start + frames].clone()
        if mask_bands:
            width = int(rng.integers(0, mask_bands + 1))
            low = int(rng.integers(0, mel.shape[0] - width + 1))
            mel[low: low + width] = 0.0
        if mask_frames:
            width = int(rng.integers(0, mask_frames + 1))
            first = int(rng.integers(0, frames - width + 1))
            mel[:, first: first + width] = 0.0
        out.append(mel)
    return torch.stack(out)


class TrialSet:
    """A validation trial list with its clips' log-mels computed once."""

    def __init__(self, trials_file: str, max_seconds: float = 30.0) -> None:
        from training.verify_calibrate import read_speech_trials

        self.trials = read_speech_trials(trials_file, True)  # trials on a silent prompt left out
        log_mel = LogMel()
        limit = int(max_seconds * 16000)
        clips = sorted({p for t in self.trials for p in (t.path_a, t.path_b)})
        with torch.no_grad():
            self.mels = {p: log_mel(torch.from_numpy(load_audio(p)[:limit])) for p in clips}

    @torch.no_grad()
    def eer(self, branch: VoiceBranch) -> float:
        branch.eval()
        vectors = {p: branch.embed_mels(m.unsqueeze(0))[0] for p, m in self.mels.items()}
        labels = np.array([t.label for t in self.trials])
        scores = np.array([float(vectors[t.path_a] @ vectors[t.path_b]) for t in self.trials])
        return float(compute_eer(scores, labels).eer)


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    mels, teacher, keys = load_cache(args.cache)
    targets = torch.stack(list(center(dict(enumerate(teacher))).values()))
    evals = {name: TrialSet(path) for name, path in (spec.split("=", 1) for spec in args.eval)}
    branch = VoiceBranch(VoiceBranchConfig(args.channels, args.pooled_channels, embedding_dim=teacher.shape[1]))
    optimizer = torch.optim.AdamW(branch.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = len(mels) // args.batch_size
    total = steps_per_epoch * args.epochs
    warmup = max(1, total // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # 5% linear warm-up, then a cosine decay
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    print(f"{len(mels)} views, {steps_per_epoch} steps an epoch", flush=True)
    best, history = math.inf, []
    for epoch in range(1, args.epochs + 1):
        branch.train()
        order, started, losses = rng.permutation(len(mels)), time.time(), []
        for step in range(steps_per_epoch):
            rows = order[step * args.batch_size: (step + 1) * args.batch_size].tolist()
            frames = int(rng.integers(args.min_frames, args.max_frames + 1))
            student = branch.embed_mels(crop_batch(mels, rows, frames, rng, args.mask_bands, args.mask_frames))
            loss = distill_loss(student, targets[rows], args.structure_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
        scores = {name: round(100 * trial_set.eer(branch), 2) for name, trial_set in evals.items()}
        chosen_by = [scores[name] for name in args.select or scores]
        pooled = float(np.mean(chosen_by)) if scores else -float(np.mean(losses))
        history.append({"epoch": epoch, "loss": round(float(np.mean(losses)), 4), "eer": scores,
                        "seconds": round(time.time() - started, 1)})
        print(json.dumps(history[-1]), flush=True)
        if scores and pooled < best:
            best = pooled
            save_branch(branch, Path(args.out), {"epoch": epoch, "eer": scores, "history": history,
                                                 "args": {k: v for k, v in vars(args).items() if k != "func"}})
    if not evals:
        save_branch(branch, Path(args.out), {"epoch": args.epochs, "history": history})


def save_branch(branch: VoiceBranch, out: Path, record: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in branch.state_dict().items()}, out / "voice_branch.safetensors")
    (out / "voice_branch.json").write_text(json.dumps({"config": branch.config.to_dict()} | record, indent=1))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = p.add_subparsers(required=True)
    c = commands.add_parser("cache", help="views, log-mels and teacher vectors of training audio")
    c.add_argument("audio", nargs="+", help="clips or folders of clips (training audio only)")
    c.add_argument("--out", required=True)
    c.add_argument("--views", type=int, default=3, help="view 0 clean, then degraded / new-voice views")
    c.add_argument("--first-view", type=int, default=0, help="number of the first view (0 = the clean one)")
    c.add_argument("--telephone-share", type=float, default=0.45, help="of the degraded views")
    c.add_argument("--max-clips", type=int, default=0)
    c.add_argument("--max-seconds", type=float, default=8.0)
    c.add_argument("--shard-size", type=int, default=100)
    c.add_argument("--part", default="0/1", help="K/N: every N-th clip from the K-th (N processes)")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=cache)
    t = commands.add_parser("train", help="fit the branch to the cached teacher vectors")
    t.add_argument("--cache", nargs="+", required=True)
    t.add_argument("--eval", nargs="*", default=[], metavar="NAME=TRIALS", help="validation trial lists")
    t.add_argument("--select", nargs="*", default=[], metavar="NAME",
                   help="evals whose mean EER chooses the saved epoch (default: all)")
    t.add_argument("--out", required=True)
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--min-frames", type=int, default=150)
    t.add_argument("--max-frames", type=int, default=300)
    t.add_argument("--mask-bands", type=int, default=0, help="SpecAugment: widest run of masked mel bands")
    t.add_argument("--mask-frames", type=int, default=0, help="SpecAugment: widest run of masked frames")
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--weight-decay", type=float, default=0.01)
    t.add_argument("--structure-weight", type=float, default=1.0)
    t.add_argument("--channels", type=int, default=256)
    t.add_argument("--pooled-channels", type=int, default=768)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=train)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
